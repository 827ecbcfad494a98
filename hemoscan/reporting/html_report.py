"""`hemoscan report JOB --out FILE.html`: one self-contained HTML page per job.

What a reader of a screening run wants on one page: the job's counts and throughput, the
failures by reason, the classification report when the manifest carried labels, and the
flagged list, most suspicious first, each with its Grad-CAM overlay. Overlays are embedded as
PNG data (``--images inline``, the default: the file can be mailed or archived on its own),
linked (``link``: local paths as file links, S3 objects as presigned HTTPS links valid for
``--presign`` seconds) or left out (``none``). Every value from the database is HTML-escaped.

The page says, at the top and the bottom, that this is a research and triage tool and not a
diagnosis, and names the model version; when the model file configured here has that version
and was trained on synthetic phantoms, it says so. Object keys are the user's own archive keys
(as in ``hemoscan results``); nothing else about a patient is stored, so nothing else is shown.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from hemoscan.errors import HemoscanError, StorageError
from hemoscan.reporting.report import (
    DISCLAIMER,
    failure_examples,
    metrics_of,
    series_metrics_of,
    summary_rows,
)
from hemoscan.settings import Settings
from hemoscan.storage import open_object, write_atomic
from schema import reports, series
from schema.models import Job

IMAGE_MODES = ("inline", "link", "none")


class ReportError(HemoscanError):
    """The report cannot be written (bad option, unwritable output)."""


@dataclass
class ReportSummary:
    path: Path
    flagged_shown: int
    flagged_total: int
    images_embedded: int
    images_missing: int


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _model_note(settings: Settings, version: str | None) -> str:
    """What the job's weights are, when the model file configured here is that version."""
    from hybrid_model.metadata import model_note, read_metadata

    try:
        meta = read_metadata(settings.model_path)
    except HemoscanError:
        meta = {}
    if version and meta.get("version") == version:
        return model_note(meta)
    return f"model {version or 'unknown'} (not the model file configured here)"


class _Images:
    """Overlays by the URI stored in ``predictions.overlay_uri``: embedded, linked or left out."""

    def __init__(self, settings: Settings, mode: str, presign_seconds: int) -> None:
        self.settings = settings
        self.mode = mode
        self.presign_seconds = presign_seconds
        self.embedded = 0
        self.missing = 0

    def html(self, uri: str | None) -> str:
        if self.mode == "none":
            return ""
        if not uri:
            return "<span class=dim>no heatmap</span>"
        try:
            store, key = open_object(uri, self.settings)
            if self.mode == "link":
                return f'<a href="{_esc(store.link(key, self.presign_seconds))}">overlay</a>'
            data = store.get(key)
        except (StorageError, OSError, HemoscanError) as exc:
            self.missing += 1
            return f"<span class=dim>overlay unavailable ({_esc(type(exc).__name__)})</span>"
        return self._img(data)

    def _img(self, data: bytes) -> str:
        self.embedded += 1
        encoded = base64.b64encode(data).decode("ascii")
        return f'<img alt="Grad-CAM overlay" src="data:image/png;base64,{encoded}">'

    def drawn(self, session: Session, job: Job, key: str, index: int, uri: str | None) -> str:
        """A key slice's overlay: the one written, or (inline mode, none written) drawn from
        its stored map and source (``hemoscan.reporting.heatmap``)."""
        if uri or self.mode != "inline":
            return self.html(uri)
        from hemoscan.reporting.heatmap import HeatmapUnavailable, render_heatmap

        try:
            png = render_heatmap(session, job, key, self.settings, index).png
        except HeatmapUnavailable:
            return self.html(None)
        return self._img(png)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.warn{background:#fff4d6;border:1px solid #e0b84c;padding:.6em 1em}.dim{color:#777}
img{width:192px;height:auto;image-rendering:pixelated}
img.plot{width:48%;max-width:660px;image-rendering:auto;margin:0 1% 8px 0}
div.key{display:inline-block;vertical-align:top;margin:0 6px 6px 0;font-size:.85em}
"""


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _metrics_html(metrics: dict[str, Any]) -> str:
    report = metrics.get("classification_report", {})
    head = (
        "<tr><th>class</th><th>precision</th><th>recall</th><th>f1-score</th><th>support</th></tr>"
    )
    body = ""
    for name in ("normal", "hemorrhage", "macro avg", "weighted avg"):
        row = report.get(name)
        if not row:
            continue
        cells = "".join(
            f"<td class=num>{row[k]:.3f}</td>" for k in ("precision", "recall", "f1-score")
        )
        body += f"<tr><td>{_esc(name)}</td>{cells}<td class=num>{int(row['support'])}</td></tr>"
    cm = metrics.get("confusion_matrix", {})
    summary = [
        ("ROC AUC", f"{metrics['roc_auc']:.4f}" if metrics.get("roc_auc") is not None else "-"),
        ("threshold used", f"{metrics.get('threshold', float('nan')):.4f}"),
        ("sensitivity / specificity", f"{metrics.get('sensitivity', float('nan')):.3f} / "
         f"{metrics.get('specificity', float('nan')):.3f}"),
        (
            "confusion (tn fp; fn tp)",
            f"{cm.get('tn')} {cm.get('fp')}; {cm.get('fn')} {cm.get('tp')}",
        ),
    ]  # fmt: skip
    return f"<table>{head}{body}</table>" + _table(summary)


def _plots(
    session: Session,
    job: Job,
    labelled: list[tuple[int, float, float]],
    metrics: dict[str, Any] | None,
) -> list[str]:
    """The probability histogram of the ``labelled`` rows by label, with the ROC curve at the
    operating point of their ``metrics``; without labels, of every scored image."""
    import numpy as np

    from hemoscan.reporting.plots import histogram_png, img_tag, roc_png

    if metrics is not None and labelled:
        y = np.array([r[0] for r in labelled])
        p = np.array([r[1] for r in labelled])
        parts = [
            img_tag(histogram_png(p, metrics["threshold"], y), "probability histogram by label")
        ]
        if 0 < y.sum() < len(y):
            parts.append(img_tag(roc_png(y, p, metrics), "ROC curve"))
    else:
        probs = np.array(reports.probabilities(session, job.id), np.float64)
        if not len(probs):
            return []
        threshold = reports.threshold_of(session, job.id)
        parts = [img_tag(histogram_png(probs, threshold), "probability histogram")]
    return ["<h2>Probabilities</h2>", *parts]


def _studies_html(session: Session, job: Job, fetch: _Images, limit: int) -> list[str]:
    """Flagged studies first: each with its series, verdicts, key slices and their overlays."""
    counts = series.counts(session, job.id)
    if not counts.series:
        return []
    studies = series.flagged_studies(session, job.id, limit)
    members = [s for _, group in studies for s in group]
    where = series.key_slice_locations(
        session, [int(k["prediction_id"]) for s in members for k in (s.key_slices or [])]
    )
    head = (
        "<tr><th>#</th><th>study</th><th>series</th><th>state</th><th>probability</th>"
        "<th>max of slices</th><th>slices (positive)</th><th>key z range</th>"
        "<th>key slices</th></tr>"
    )
    rows = ""
    for rank, (study, group) in enumerate(studies, start=1):
        for s in group:
            z = (
                f"{s.key_z_min:.1f} to {s.key_z_max:.1f} mm"
                if s.key_z_min is not None and s.key_z_max is not None
                else "-"
            )
            cells = ""
            for k in (s.key_slices or []) if s.label else []:  # key slices of flagged series
                key, index, uri, *_ = where.get(
                    int(k["prediction_id"]), series.KeySlice("?", 0, None)
                )
                cells += (
                    f"<div class=key>{_esc(key)} p={k['probability']:.3f}<br>"
                    f"{fetch.drawn(session, job, key, index, uri)}</div>"
                )
            prob = "-" if s.probability is None else f"{s.probability:.4f}"
            base = "-" if s.max_slice_probability is None else f"{s.max_slice_probability:.4f}"
            rows += (
                f"<tr><td class=num>{rank}</td><td>{_esc(study.study_key)}</td>"
                f"<td>{_esc(s.series_key)}{' <b>flagged</b>' if s.label else ''}</td>"
                f"<td>{_esc(s.state)}</td><td class=num>{prob}</td><td class=num>{base}</td>"
                f"<td class=num>{s.slice_count} ({s.positive_slices})</td><td>{z}</td>"
                f"<td>{cells or '-'}</td></tr>"
            )
    summary = _table([
        ("studies (flagged)", f"{counts.studies} ({counts.studies_flagged})"),
        ("series (flagged)", f"{counts.series} ({counts.series_flagged})"),
        ("series provisional / final", f"{counts.provisional} / {counts.final}"),
    ])  # fmt: skip
    parts = ["<h2>Studies and series</h2>", summary]
    labelled = series_metrics_of(series.labelled_series(session, job.id))
    if labelled is not None:
        parts += [
            "<p>Series against the manifest's labels (a series is positive when one of its "
            "labelled slices is):</p>",
            _table([
                ("series (with hemorrhage)", f"{labelled['count']} ({labelled['positives']})"),
                ("ROC AUC, series verdict", f"{labelled['roc_auc']:.4f}"),
                ("ROC AUC, max of slices (baseline)", f"{labelled['max_of_slices_roc_auc']:.4f}"),
                ("sensitivity / specificity at the series threshold",
                 f"{labelled['sensitivity']:.3f} / {labelled['specificity']:.3f}"),
            ]),
        ]  # fmt: skip
    parts += [
        f"<h2>Flagged studies ({len(studies)} of {counts.studies_flagged}, most suspicious "
        "first)</h2>",
        f"<table>{head}{rows}</table>" if rows else "<p class=dim>no study was flagged</p>",
    ]
    return parts


def build_report(
    session: Session,
    job: Job,
    settings: Settings,
    out: str | Path,
    *,
    limit: int = 100,
    images: str = "inline",
    presign_seconds: int = 3600,
) -> ReportSummary:
    """Write the job's HTML report to ``out`` (atomically) and say what it holds."""
    if images not in IMAGE_MODES:
        raise ReportError(f"--images must be one of {', '.join(IMAGE_MODES)}, not {images!r}")
    if limit < 0:
        raise ReportError("--limit must be 0 or more")
    out = Path(out)
    if not out.parent.is_dir():
        raise ReportError(f"output folder does not exist: {out.parent}")
    status = reports.job_status(session, job)
    state = status.progress
    labelled = reports.labelled_scores(session, job.id)
    metrics = metrics_of(labelled)
    note = _model_note(settings, job.model_version)
    fetch = _Images(settings, images, presign_seconds)

    flagged = reports.flagged(session, job.id, limit)
    flagged_rows = "".join(
        f"<tr><td class=num>{rank}</td><td>{_esc(key)}</td><td class=num>{prob:.4f}</td>"
        f"<td>{fetch.html(uri)}</td></tr>"
        for rank, (key, prob, uri) in enumerate(flagged, start=1)
    )
    failure_rows = "".join(
        f"<tr><td>{_esc(reason)}</td><td class=num>{count}</td><td>{_esc(text)}</td></tr>"
        for reason, count, text in failure_examples(session, job.id)
    )
    summary = [
        ("job", job.name),
        *summary_rows(status),
        ("created", job.created_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
    ]
    warning = f"<p class=warn><b>{_esc(DISCLAIMER)}</b> {_esc(note)}</p>"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>hemoscan report: {_esc(job.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>hemoscan report: {_esc(job.name)}</h1>",
        warning,
        "<h2>Summary</h2>",
        _table(summary),
        "<h2>Failures by reason</h2>",
        (
            f"<table><tr><th>reason</th><th>count</th><th>example</th></tr>{failure_rows}</table>"
            if failure_rows
            else "<p class=dim>none</p>"
        ),
    ]
    parts += _plots(session, job, labelled, metrics)
    if metrics is not None:
        parts += ["<h2>Classification report against the manifest's labels</h2>"]
        parts += [_metrics_html(metrics)]
    parts += _studies_html(session, job, fetch, limit)
    shown = len(flagged)
    parts += [
        f"<h2>Flagged images ({shown} of {state.positives}, most suspicious first)</h2>",
        (
            "<table><tr><th>#</th><th>object</th><th>probability</th><th>Grad-CAM</th></tr>"
            f"{flagged_rows}</table>"
            if flagged_rows
            else "<p class=dim>no image was flagged</p>"
        ),
        warning,
        f"<p class=dim>written {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC by hemoscan report</p>",
        "</body></html>\n",
    ]
    write_atomic(out, "".join(parts).encode("utf-8"))
    return ReportSummary(out, shown, state.positives, fetch.embedded, fetch.missing)
