"""`hemoscan demo`: the whole product on the embedded defaults, with no services at all.

Writes a phantom archive (whole series from the skull base to the vertex, DICOM and PNG
alternating by series, optionally single slices, plus a few corrupt files), scans it in this
process with the committed demo models, and prints what a user would look at: counts, failures
by reason, the classification report against the phantom labels, the series verdicts against
the series labels (next to max-of-slices), and where things are.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from rich.console import Console

from hemoscan.settings import Settings

# Bad objects a real archive has: each must end as a failure row with its reason.
CORRUPT = {
    "corrupt/empty.png": b"",
    "corrupt/truncated.dcm": None,  # filled from a real phantom, cut short
    "corrupt/random-bytes.dcm": os.urandom(2048),
    "corrupt/notes.png": b"this is a text file with an image name\n",
}


def build_archive(out: Path, count: int, seed: int, series: int = 8) -> Path:
    """Phantoms in ``out/archive`` and ``out/manifest.csv`` (key, label); returns the manifest."""
    from hybrid_model.synth.write import generate_series

    archive = out / "archive"
    # CT phantom series (skull base to vertex, scanner simulation, mimics), 256 x 256 to keep
    # the demo quick; DICOM series alternate with PNG exports of random windows (a folder is a
    # series). ``count`` single slices of other series come on top, each a series of its own.
    records = generate_series(archive / "series", series, seed, fmt="mixed", size=256)
    if count:
        records += generate_series(
            archive / "slices", count, seed + 1, fmt="mixed", size=256, single=True
        )
    first_dcm = next(Path(r["file"]) for r in records if r["file"].endswith(".dcm"))
    (archive / "corrupt").mkdir(exist_ok=True)
    for key, data in CORRUPT.items():
        if data is None:
            data = first_dcm.read_bytes()[:600]
        (archive / key).write_bytes(data)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "label"])
        for r in records:
            writer.writerow([Path(r["file"]).relative_to(archive).as_posix(), int(r["hemorrhage"])])
        for key in CORRUPT:
            writer.writerow([key, ""])
    return manifest


def run_demo(
    settings: Settings,
    count: int,
    seed: int,
    out: Path | None,
    console: Console,
    series: int = 8,
) -> int:
    from hemoscan.cli.progress import scan_with_progress
    from hemoscan.reporting.report import print_status
    from producer.plan import ScanPlan
    from schema.db import session_factory

    if settings.distributed:
        console.print(
            "[yellow]HEMOSCAN_BROKER_URL is set; the demo runs on the embedded defaults "
            "instead (in this process, SQLite and a local folder).[/yellow]"
        )
        settings = settings.model_copy(update={"broker_url": None})
    out = (out or settings.data_dir / "demo").resolve()
    console.rule("hemoscan demo")
    console.print(
        "[bold]Research and triage tool, not a diagnosis.[/bold] The demo model was trained "
        "on synthetic phantoms and is NOT clinically valid."
    )
    manifest = out / "manifest.csv"
    if not manifest.exists():
        extra = f", {count} single slices" if count else ""
        console.print(
            f"writing {series} phantom series (DICOM and PNG){extra} and 4 corrupt files to {out}"
        )
        manifest = build_archive(out, count, seed, series)
    else:
        console.print(f"reusing the phantom archive in {out}")
    plan = ScanPlan(
        source=str(out / "archive"), job_name=f"demo-{seed}-{series}-{count}", manifest=manifest
    )
    outcome, _ = scan_with_progress(settings, plan, console)
    sessions = session_factory(settings.effective_database_url)
    with sessions.begin() as session:
        from hemoscan.reporting.html_report import build_report
        from schema.jobs import find_job

        job = find_job(session, outcome.job_name)
        print_status(Console(), session, job)
        report = build_report(session, job, settings, out / "report.html", limit=48)
    console.print(f"heatmaps:  {settings.effective_output_location}/{outcome.job_id}/")
    console.print(f"report:    {report.path} (summary, failures, metrics, flagged with heatmaps)")
    console.print(f"database:  {settings.effective_database_url}")
    console.print(f"next:      hemoscan results {outcome.job_name} --series")
    return 0
