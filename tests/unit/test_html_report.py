"""`hemoscan report`: the HTML page of a job, built from real rows in SQLite (no services)."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pytest

from hemoscan.privacy import key_ref
from hemoscan.reporting.html_report import ReportError, build_report
from hemoscan.settings import load_settings
from schema import results
from schema.db import session_factory, upgrade
from schema.jobs import open_job

HOSTILE_KEY = 'ward<script>alert("x")</script>.png'


@pytest.fixture
def job_db(tmp_path):
    """A finished job: 3 flagged (one key hostile, one overlay missing), 2 normal, 1 failure."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    sessions = session_factory(url)
    overlays = tmp_path / "heatmaps"
    overlays.mkdir()
    keys = ["a.dcm", HOSTILE_KEY, "c.png", "d.png", "e.png", "broken.dcm"]
    labels = [1, 1, 1, 0, 0, None]
    probs = {"a.dcm": 0.91, HOSTILE_KEY: 0.97, "c.png": 0.55, "d.png": 0.30, "e.png": 0.02}
    with sessions.begin() as session:
        job, _ = open_job(session, "ward-7", str(tmp_path / "archive"), {}, "abc123")
        results.add_scans(
            session,
            job.id,
            [{"object_key": k, "true_label": y} for k, y in zip(keys, labels, strict=True)],
        )
        ids = results.scan_ids(session, job.id, keys)
        predictions = []
        for i, (key, prob) in enumerate(probs.items()):
            overlay = overlays / f"{i}.overlay.png"
            if key != "c.png":  # c's overlay was never written: the report must say so
                cv2.imwrite(str(overlay), np.full((8, 8, 3), 40 * i, np.uint8))
            predictions.append(
                {
                    "scan_id": ids[key],
                    "probability": prob,
                    "label": prob >= 0.5,
                    "threshold": 0.5,
                    "model_version": "abc123",
                    "overlay_uri": str(overlay),
                    "raw_map_uri": None,
                    "timings": {},
                    "worker_host": "test",
                }
            )
        failure = {"scan_id": ids["broken.dcm"], "reason": "unreadable", "message": "truncated"}
        results.record_batch(session, job.id, predictions, [failure])
    return url, sessions, overlays


def _report(job_db, tmp_path, **kwargs):
    url, sessions, _ = job_db
    settings = load_settings(database_url=url, data_dir=tmp_path)
    from schema.jobs import find_job

    with sessions.begin() as session:
        summary = build_report(
            session, find_job(session, "ward-7"), settings, tmp_path / "r.html", **kwargs
        )
    return summary, (tmp_path / "r.html").read_text()


def test_report_has_summary_failures_metrics_and_ranked_flagged_list(job_db, tmp_path):
    summary, page = _report(job_db, tmp_path)
    assert summary.flagged_total == 3 and summary.flagged_shown == 3
    assert summary.images_embedded == 2 and summary.images_missing == 1
    assert "not a diagnosis" in page and page.count("class=warn") == 2
    assert "<th>scored</th><td>5</td>" in page and "<th>failed</th><td>1</td>" in page
    # Keys may hold identifiers: the failure example names its key by hash.
    assert "unreadable" in page and f"{key_ref('broken.dcm')}: truncated" in page
    assert "Classification report" in page and "ROC AUC" in page
    # Flagged rows, most suspicious first; the normal images are not listed.
    order = [page.index(k) for k in ("ward&lt;script&gt;", "a.dcm", "c.png")]
    assert order == sorted(order) and "d.png" not in page.split("Flagged images")[1]
    assert "overlay unavailable" in page


def test_database_values_are_escaped(job_db, tmp_path):
    _, page = _report(job_db, tmp_path)
    assert "<script>" not in page
    assert "ward&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.png" in page


def test_embedded_overlays_are_the_stored_pngs(job_db, tmp_path):
    _, page = _report(job_db, tmp_path)
    _, _, overlays = job_db
    flagged = page.split("Flagged images")[1]  # the plots come before
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", flagged)
    stored = {p.read_bytes() for p in overlays.iterdir()}
    assert len(embedded) == 2 and {base64.b64decode(e) for e in embedded} <= stored


def test_limit_links_and_bad_options(job_db, tmp_path):
    summary, page = _report(job_db, tmp_path, limit=1, images="link")
    assert summary.flagged_shown == 1 and summary.images_embedded == 0
    assert "Flagged images (1 of 3" in page and 'href="file://' in page
    _, page = _report(job_db, tmp_path, images="none")
    flagged = page.split("Flagged images")[1]
    assert "data:image/png" not in flagged and "href=" not in page
    with pytest.raises(ReportError, match="--images"):
        _report(job_db, tmp_path, images="gif")
    url, sessions, _ = job_db
    from schema.jobs import find_job

    with sessions.begin() as session, pytest.raises(ReportError, match="does not exist"):
        settings = load_settings(database_url=url, data_dir=tmp_path)
        build_report(session, find_job(session, "ward-7"), settings, tmp_path / "no" / "r.html")


def test_cli_writes_the_report(job_db, tmp_path, monkeypatch, capsys):
    from hemoscan.cli import main
    from hemoscan.settings import get_settings

    url, _, _ = job_db
    monkeypatch.setenv("HEMOSCAN_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        out = tmp_path / "cli.html"
        assert main(["report", "ward-7", "--out", str(out)]) == 0
        assert main(["report", "no-such-job"]) == 1
    finally:
        get_settings.cache_clear()
    assert "hemoscan report: ward-7" in out.read_text()
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "3 of 3 flagged" in err and "1 unavailable" in err and "no job called" in err


def _plots(page: str) -> dict[str, np.ndarray | None]:
    found = re.findall(r'<img class=plot alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    return {
        alt: cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        for alt, data in found
    }


def test_report_plots_the_histogram_by_label_and_the_roc_curve(job_db, tmp_path):
    _, page = _report(job_db, tmp_path)
    plots = _plots(page)
    assert set(plots) == {"probability histogram by label", "ROC curve"}
    for image in plots.values():
        assert image is not None and image.shape == (396, 660, 3)
        assert image.std() > 10  # drawn, not blank
    assert page.index("Probabilities") < page.index("Classification report")


def test_a_job_without_labels_gets_the_plain_histogram(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    sessions = session_factory(url)
    with sessions.begin() as session:
        job, _ = open_job(session, "plain", str(tmp_path), {}, "abc123")
        results.add_scans(session, job.id, [{"object_key": f"{i}.png"} for i in range(4)])
        ids = results.scan_ids(session, job.id, [f"{i}.png" for i in range(4)])
        rows = [{"scan_id": ids[f"{i}.png"], "probability": i / 4, "label": i > 2,
                 "threshold": 0.7, "model_version": "abc123", "overlay_uri": None,
                 "raw_map_uri": None, "timings": {}, "worker_host": "t"} for i in range(4)]  # fmt: skip
        results.record_batch(session, job.id, rows, [])
    settings = load_settings(database_url=url, data_dir=tmp_path)
    from schema.jobs import find_job

    with sessions.begin() as session:
        build_report(session, find_job(session, "plain"), settings, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert set(_plots(page)) == {"probability histogram"}
