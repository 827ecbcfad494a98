"""`hemoscan status` and `hemoscan results`: a job's progress, throughput, failures by reason,
the scored list, and the classification report when the manifest carried labels.

Rendering only: the queries are ``schema.reports`` and nothing here writes to the database.
"""

from __future__ import annotations

import csv
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from hemoscan.privacy import key_ref
from schema import reports, series
from schema.models import RETRYABLE_REASONS, Job, Series

DISCLAIMER = "Research and triage tool: these scores are not a diagnosis."


def labelled_metrics(session: Session, job_id: Any) -> dict[str, Any] | None:
    """Classification metrics against the manifest's labels (None without labels)."""
    return metrics_of(reports.labelled_scores(session, job_id))


def metrics_of(rows: list[tuple[int, float, float]]) -> dict[str, Any] | None:
    """Classification metrics of (label, probability, threshold) rows (None without rows)."""
    if not rows:
        return None
    import numpy as np

    from hybrid_model.metrics import classification_metrics

    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    return classification_metrics(y, p, threshold=rows[0][2])


def print_job_list(console: Console, sessions: sessionmaker[Session]) -> None:
    table = Table(title="hemoscan jobs")
    for col in ("job", "state", "total", "scored", "failed", "positives", "created"):
        table.add_column(col, justify="right" if col in ("total", "scored", "failed") else "left")
    with sessions() as session:
        for job in reports.all_jobs(session):
            status = reports.job_status(session, job)
            state = status.progress
            table.add_row(
                job.name,
                status.state,
                str(state.total),
                str(state.scored),
                str(state.failed),
                str(state.positives),
                job.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    console.print(table)


def summary_rows(status: reports.JobStatus) -> list[tuple[str, str]]:
    """The job's summary as (label, value) rows: `hemoscan status` and the HTML report."""
    job, state, rate = status.job, status.progress, status.throughput
    return [
        ("id", str(job.id)),
        ("source", job.source_uri),
        ("state", status.state),
        ("pass", str(job.pass_number)),
        ("model", job.model_version or "?"),
        ("objects", str(state.total)),
        ("scored", str(state.scored)),
        ("flagged (label 1)", str(state.positives)),
        ("failed", str(state.failed)),
        ("pending", str(max(state.total - state.done, 0))),
        ("throughput", f"{rate:.1f} images/s" if rate else "-"),
    ]


def failure_examples(session: Session, job_id: Any) -> list[tuple[str, int, str]]:
    """(reason, count, one example "key:<hash>: message") per failure reason of the job.

    Keys may hold identifiers, so the example names its key by hash (``hemoscan results``
    lists the keys themselves)."""
    rows = []
    for reason, count, key, message in reports.failure_examples(session, job_id):
        ref = key_ref(key)
        rows.append((reason, count, message if message.startswith(ref) else f"{ref}: {message}"))
    return rows


def print_status(console: Console, session: Session, job: Job) -> dict[str, Any]:
    """Counts, throughput, failures by reason and, with labels, the classification report."""
    status = reports.job_status(session, job)
    table = Table(title=f"job {job.name}", show_header=False)
    for label, value in summary_rows(status):
        table.add_row(label, value)
    console.print(table)
    examples = failure_examples(session, job.id)
    if examples:
        by_reason = Table(title="failures by reason")
        by_reason.add_column("reason")
        by_reason.add_column("count", justify="right")
        by_reason.add_column("a rerun", justify="center")
        by_reason.add_column("example")
        for reason, count, text in examples:
            rerun = "resends" if reason in RETRYABLE_REASONS else "keeps"
            by_reason.add_row(reason, str(count), rerun, text)
        console.print(by_reason)
    reasons = {reason: count for reason, count, _ in examples}
    metrics = labelled_metrics(session, job.id)
    if metrics is not None:
        from hybrid_model.metrics import render_metrics

        render_metrics(metrics, title=f"classification report against the labels ({job.name})")
    verdicts = series.counts(session, job.id)
    series_metrics = None
    if verdicts.series:
        console.print(verdict_table(verdicts))
        series_metrics = series_metrics_of(series.labelled_series(session, job.id))
        if series_metrics is not None:
            console.print(series_metrics_table(series_metrics, job.name))
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    return {
        "progress": status.progress,
        "throughput": status.throughput,
        "failures": reasons,
        "metrics": metrics,
        "verdicts": verdicts,
        "series_metrics": series_metrics,
    }


def verdict_table(counts: series.VerdictCounts) -> Table:
    table = Table(title="studies and series")
    for col in ("", "total", "flagged", "provisional", "final"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("studies", str(counts.studies), str(counts.studies_flagged), "", "")
    table.add_row(
        "series",
        str(counts.series),
        str(counts.series_flagged),
        str(counts.provisional),
        str(counts.final),
    )
    return table


def series_metrics_of(rows: list[tuple[int, float, float, float]]) -> dict[str, Any] | None:
    """Series-level metrics of the stored verdicts against the labels (a series is positive
    when one of its slices is), with max-of-slices, the baseline, side by side (ROC AUC)."""
    if not rows:
        return None
    import numpy as np

    from hybrid_model.metrics import classification_metrics

    y = np.array([r[0] for r in rows])
    stage = classification_metrics(y, np.array([r[1] for r in rows]), threshold=rows[0][3])
    baseline = classification_metrics(y, np.array([r[2] for r in rows]))
    stage["max_of_slices_roc_auc"] = baseline["roc_auc"]
    stage["positives"] = int(y.sum())
    return stage


def series_metrics_table(metrics: dict[str, Any], name: str) -> Table:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    table = Table(title=f"series against the labels ({name}; a series is positive when one "
                  "of its labelled slices is)")  # fmt: skip
    table.add_column("figure")
    table.add_column("value", justify="right")
    cm = metrics.get("confusion_matrix", {})
    table.add_row("series (with hemorrhage)", f"{metrics['count']} ({metrics['positives']})")
    table.add_row("ROC AUC, series verdict", fmt(metrics.get("roc_auc")))
    table.add_row("ROC AUC, max of slices (baseline)", fmt(metrics.get("max_of_slices_roc_auc")))
    table.add_row("threshold", fmt(metrics.get("threshold")))
    table.add_row("sensitivity / specificity",
                  f"{fmt(metrics.get('sensitivity'))} / {fmt(metrics.get('specificity'))}")  # fmt: skip
    table.add_row("confusion (tn fp; fn tp)",
                  f"{cm.get('tn')} {cm.get('fp')}; {cm.get('fn')} {cm.get('tp')}")  # fmt: skip
    return table


SERIES_HEADER = (
    "study",
    "series",
    "source",
    "state",
    "probability",
    "label",
    "max_slice_probability",
    "method",
    "slices",
    "positive_slices",
    "key_z_min",
    "key_z_max",
    "key_slices",
)


def key_slices_text(row: Series, where: dict[int, series.KeySlice]) -> str:
    """``object_key[#slice] @ z p=0.97 overlay`` of each key slice, ``|``-separated."""
    out = []
    for k in row.key_slices or []:
        key, index, uri, *_ = where.get(int(k["prediction_id"]), series.KeySlice("?", 0, None))
        name = f"{key}#{index}" if index else key
        z = f" @ {k['z_mm']:.1f} mm" if k.get("z_mm") is not None else ""
        out.append(f"{name}{z} p={k['probability']:.4f} {uri or '-'}")
    return " | ".join(out)


def write_series_results(
    session: Session, job: Job, positives_only: bool, as_csv: bool, console: Console
) -> int:
    """`hemoscan results JOB --series`: series most suspicious first, key slices with their
    heatmaps."""
    rows = series.series_rows(session, job.id, positives_only)
    ids = [int(k["prediction_id"]) for row, _ in rows for k in (row.key_slices or [])]
    where = series.key_slice_locations(session, ids)

    def fields(row: Series, study: str) -> tuple[Any, ...]:
        def num(v: float | None, digits: int = 6) -> str:
            return "" if v is None else f"{v:.{digits}f}"

        return (
            study, row.series_key, row.source, row.state, num(row.probability),
            "" if row.label is None else int(row.label), num(row.max_slice_probability),
            row.method or "", row.slice_count, row.positive_slices, num(row.key_z_min, 1),
            num(row.key_z_max, 1), key_slices_text(row, where),
        )  # fmt: skip

    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(SERIES_HEADER)
        for row, study in rows:
            writer.writerow(fields(row, study))
        return len(rows)
    # The terminal view is the short one: pseudonyms cut to 14 characters, the top key slice
    # without its overlay; --csv has every column in full.
    table = Table(title=f"series of {job.name}" + (" (flagged only)" if positives_only else ""))
    for col in ("series", "study", "source", "state", "p", "max slice p", "flag",
                "slices (+)", "key z mm", "top key slice"):  # fmt: skip
        table.add_column(col, justify="right" if col in ("p", "max slice p") else "left")
    for row, study in rows:
        top = (row.key_slices or [{}])[0]
        key, index, *_ = where.get(int(top.get("prediction_id", -1)), series.KeySlice("-", 0, None))
        z = (
            f"{row.key_z_min:.0f}..{row.key_z_max:.0f}"
            if row.key_z_min is not None and row.key_z_max is not None
            else "-"
        )
        table.add_row(
            row.series_key[:14],
            study[:13],
            row.source,
            row.state,
            "-" if row.probability is None else f"{row.probability:.3f}",
            "-" if row.max_slice_probability is None else f"{row.max_slice_probability:.3f}",
            "yes" if row.label else "no",
            f"{row.slice_count} ({row.positive_slices})",
            z,
            f"{key}#{index}" if index else key,
        )
    console.print(table)
    console.print(f"[dim]{len(rows)} series (--csv: every column in full). {DISCLAIMER}[/dim]")
    return len(rows)


def write_results(
    session: Session, job: Job, positives_only: bool, as_csv: bool, console: Console
) -> int:
    rows = reports.result_rows(session, job.id, positives_only)
    # slice: the image's index in its object (a volume's axial slices; 0 for a single slice).
    # flags: decode notes such as no_rescale (docs/decoding.md), ";"-separated.
    # raw_map_index: the image's row of the packed maps raw_map (np.load(f)["maps"][index]);
    # empty where raw_map is a one-image .npy (scored before packs) or there is none.
    header = (
        "object_key",
        "slice",
        "probability",
        "label",
        "overlay",
        "raw_map",
        "raw_map_index",
        "flags",
    )
    count = 0
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        for row in rows:
            flags = ";".join(row[6] or ())
            index = "" if row[7] is None else row[7]
            writer.writerow(
                (row[0], row[1], f"{row[2]:.6f}", int(row[3]), row[4] or "", row[5] or "")
                + (index, flags)
            )
            count += 1
        return count
    table = Table(title=f"results of {job.name}" + (" (flagged only)" if positives_only else ""))
    for col in header:
        table.add_column(col)
    for row in rows:
        flags = ", ".join(row[6] or ()) or "-"
        table.add_row(
            row[0],
            str(row[1]),
            f"{row[2]:.4f}",
            str(int(row[3])),
            row[4] or "-",
            row[5] or "-",
            "-" if row[7] is None else str(row[7]),
            flags,
        )
        count += 1
    console.print(table)
    console.print(f"[dim]{count} rows. {DISCLAIMER}[/dim]")
    return count
