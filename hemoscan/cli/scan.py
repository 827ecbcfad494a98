"""`hemoscan scan | status | results | report | demo`.

Nothing here imports TensorFlow at import time."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from hemoscan.settings import get_settings

console = Console(stderr=True)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from producer.plan import SERIES_BY  # cheap: no SQLAlchemy, no TensorFlow

    scan = subparsers.add_parser(
        "scan",
        help="screen every image of an archive (s3://bucket/prefix, a folder, or a PACS over "
        "DICOMweb)",
        description="List SOURCE (or read --manifest), register the job and send its images "
        "in batches. With HEMOSCAN_BROKER_URL set, batches go to Celery workers; without it "
        "they run here, with a progress bar. Running the same job again sends only what is "
        "not scored yet. A PACS is read over DICOMweb: SOURCE dicomweb+http(s)://HOST:PORT/PATH "
        "(the DICOMweb root; credentials from HEMOSCAN_DICOMWEB_USERNAME/_PASSWORD or "
        "_TOKEN), listed with QIDO-RS by the filters below, instances retrieved with WADO-RS "
        "by the workers; --write-back sends the DICOM results (SR and Parametric Maps) back "
        "into each source study with STOW-RS once the job is done.",
    )
    scan.add_argument(
        "source",
        metavar="SOURCE",
        help="s3://bucket/prefix, a folder, or dicomweb+http(s)://host:port/dicom-web",
    )
    scan.add_argument("--job", help="job name (default: the source); reuse it to resume")
    scan.add_argument("--batch-size", type=int, help="images per batch (default: setting)")
    scan.add_argument("--pattern", help="only keys matching this glob, e.g. '*.dcm'")
    scan.add_argument(
        "--manifest",
        type=Path,
        help="CSV of keys relative to SOURCE with an optional label column; or a public "
        "layout's label table, matched against SOURCE's listing: RSNA stage_2_train.csv "
        "(ID,Label), CQ500 reads.csv (2-of-3 majority per study folder), Kaggle labels.csv "
        "(id, hemorrhage)",
    )
    scan.add_argument(
        "--series-by",
        choices=SERIES_BY,
        default="folder",
        help="what makes a series of images that carry none (PNG, JPEG, DICOM without a "
        "SeriesInstanceUID) when the manifest names none: 'folder' (default: the slices of "
        "one exam exported to one folder) or 'image' (each image its own series and study: "
        "a folder of unrelated slices, such as the Kaggle head_ct/ set). DICOM series, NIfTI "
        "volumes and a manifest's series column are never overridden",
    )
    scan.add_argument("--rescore", action="store_true", help="score everything again")
    pacs = scan.add_argument_group("DICOMweb source (QIDO-RS filters)")
    pacs.add_argument("--modality", default=None, help="series of this modality (default CT)")
    pacs.add_argument(
        "--study-date",
        metavar="YYYYMMDD[-YYYYMMDD]",
        help="studies of this date or range (either end may be left open)",
    )
    pacs.add_argument(
        "--study-description",
        help="studies whose description matches (* and ? wildcards; a comma separates "
        "alternatives, as in any QIDO-RS match)",
    )
    pacs.add_argument("--series-description", help="series whose description matches (as above)")
    pacs.add_argument(
        "--write-back",
        action="store_true",
        help="when the job is done (implies --wait), write its DICOM results and send them "
        "into the source studies with STOW-RS (see `hemoscan dicom-results`)",
    )
    pacs.add_argument(
        "--flagged",
        action="store_true",
        help="with --write-back: only the series flagged positive",
    )
    scan.add_argument(
        "--wait", action="store_true", help="distributed mode: show progress until done"
    )
    scan.set_defaults(func=_scan)

    status = subparsers.add_parser(
        "status",
        help="progress, throughput and failures of a job (or list the jobs)",
        description="Without JOB: every job with its counts. With JOB: counts, throughput, "
        "failures by reason and, when the manifest carried labels, the classification report.",
    )
    status.add_argument("job", nargs="?", metavar="JOB", help="job name or id")
    status.set_defaults(func=_status)

    res = subparsers.add_parser(
        "results",
        help="the scored images (or series) of a job with their heatmap locations",
        description="Every scored image of JOB, most suspicious first; with --series, every "
        "series with its verdict (provisional or final), the max-of-slices baseline and its "
        "key slices with their heatmaps. Series and studies are shown by pseudonym, never by "
        "UID.",
    )
    res.add_argument("job", metavar="JOB", help="job name or id")
    res.add_argument(
        "--series", action="store_true", help="series verdicts instead of single images"
    )
    res.add_argument(
        "--positives", action="store_true", help="only images (or series) flagged positive"
    )
    res.add_argument("--csv", action="store_true", help="CSV on standard output")
    res.set_defaults(func=_results)

    heat = subparsers.add_parser(
        "heatmap",
        help="render one scored image's Grad-CAM overlay to a PNG file",
        description="Draws the overlay of one scored image of JOB again, from its stored raw "
        "map and its source object (no model needed): for any image, flagged or not, whether "
        "or not an overlay PNG was written. KEY is the object key as `hemoscan results JOB` "
        "lists it; a NIfTI volume needs --slice.",
    )
    heat.add_argument("job", metavar="JOB", help="job name or id")
    heat.add_argument("key", metavar="KEY", help="the object key of the image in JOB's source")
    heat.add_argument("--out", type=Path, required=True, help="PNG file to write")
    heat.add_argument(
        "--slice", type=int, default=None, help="slice index within a volume (0 = most inferior)"
    )
    heat.set_defaults(func=_heatmap)

    sr = subparsers.add_parser(
        "dicom-results",
        help="write each DICOM series' verdict as a DICOM SR, its key slices' maps as "
        "Parametric Maps",
        description="One Comprehensive 3D SR (TID 1500) per DICOM series of JOB with a "
        "verdict: the finding intracranial hemorrhage with its probability, Present or Absent "
        "at the threshold, the key slices referenced, the model and its version, and the "
        "research-use statement; and a Parametric Map of each key slice's Grad-CAM map on the "
        "slice's own pixel grid (values 0 to 1, a real-world value mapping). Patient and "
        "study attributes come from the source's key "
        "slices (read again from the source); new UIDs under HEMOSCAN_DICOM_UID_ROOT, the same "
        "on every run. Files are named by the series' pseudonym. PNG folders and NIfTI volumes "
        "have no DICOM study: they are skipped.",
    )
    sr.add_argument("job", metavar="JOB", help="job name or id")
    sr.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the .dcm files (default: the output location, JOB_ID/dicom/)",
    )
    sr.add_argument("--flagged", action="store_true", help="only series flagged positive")
    sr.add_argument(
        "--write-back",
        action="store_true",
        help="also send them into each source study with STOW-RS (a DICOMweb source only)",
    )
    sr.set_defaults(func=_dicom_sr)

    report = subparsers.add_parser(
        "report",
        help="write a job's HTML report: summary, failures, metrics, flagged list with heatmaps",
        description="One self-contained HTML page for JOB: counts and throughput, failures by "
        "reason, the classification report when the manifest carried labels, and the flagged "
        "images, most suspicious first, with their Grad-CAM overlays. Research and triage "
        "tool: the page says so, and names the model.",
    )
    report.add_argument("job", metavar="JOB", help="job name or id")
    report.add_argument(
        "--out", type=Path, default=None, help="HTML file (default: ./hemoscan-report-JOB.html)"
    )
    report.add_argument(
        "--limit", type=int, default=100, help="flagged images listed (default 100)"
    )
    report.add_argument(
        "--images",
        choices=("inline", "link", "none"),
        default="inline",
        help="overlays embedded in the page (default), linked (S3: presigned), or left out",
    )
    report.add_argument(
        "--presign",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="lifetime of presigned S3 links with --images link (default 3600)",
    )
    report.set_defaults(func=_report)

    demo = subparsers.add_parser(
        "demo",
        help="generate a phantom archive and screen it on the embedded defaults",
        description="No services needed: writes synthetic head-CT phantom series (skull base "
        "to vertex; DICOM and PNG, with a few corrupt files) to a folder, scans them with the "
        "demo models in this process, and prints the summary, the classification report and "
        "the series verdicts against the phantom labels (next to max-of-slices).",
    )
    demo.add_argument(
        "--series", type=int, default=8, help="phantom series, 25-60 slices each (default 8)"
    )
    demo.add_argument(
        "--count", type=int, default=0, help="single phantom slices on top (default 0)"
    )
    demo.add_argument("--seed", type=int, default=2024, help="phantom seed (default 2024)")
    demo.add_argument(
        "--out", type=Path, default=None, help="folder (default: <HEMOSCAN_DATA_DIR>/demo)"
    )
    demo.set_defaults(func=_demo)


def _sessions():  # type: ignore[no-untyped-def]
    from schema.db import session_factory, upgrade

    url = get_settings().effective_database_url
    if url.startswith("sqlite"):
        upgrade(url)
    return session_factory(url)


def _scan(args: argparse.Namespace) -> int:
    from hemoscan.dicomweb import Filters, is_dicomweb
    from hemoscan.errors import ConfigurationError
    from producer.plan import ScanPlan, check_plan

    chosen = {
        "modality": args.modality,
        "study_date": args.study_date,
        "study_description": args.study_description,
        "series_description": args.series_description,
    }
    filters = None
    if any(v is not None for v in chosen.values()):
        filters = Filters(**{k: v for k, v in chosen.items() if v is not None})
    if args.write_back and not is_dicomweb(args.source):
        raise ConfigurationError(
            "--write-back sends results to a DICOMweb source; for this source write them "
            "with `hemoscan dicom-results JOB`"
        )
    if args.flagged and not args.write_back:
        raise ConfigurationError("--flagged goes with --write-back")
    plan = ScanPlan(
        source=args.source,
        job_name=args.job,
        batch_size=args.batch_size,
        pattern=args.pattern,
        manifest=args.manifest,
        rescore=args.rescore,
        filters=filters,
        series_by=args.series_by,
    )
    check_plan(plan, get_settings())  # a missing folder fails here, before anything loads
    from hemoscan.cli.progress import scan_with_progress

    wait = args.wait or args.write_back
    outcome, state = scan_with_progress(get_settings(), plan, console, wait=wait)
    if state is not None and state.failed:
        console.print(
            f"[yellow]{state.failed} image(s) failed: 'hemoscan status {outcome.job_name!r}'"
        )
    if args.write_back:
        return _write_dicom(outcome.job_id, None, args.flagged, write_back=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    from hemoscan.reporting.report import print_job_list, print_status
    from schema.jobs import find_job

    out = Console()
    sessions = _sessions()
    if not args.job:
        print_job_list(out, sessions)
        return 0
    with sessions.begin() as session:
        print_status(out, session, find_job(session, args.job))
    return 0


def _results(args: argparse.Namespace) -> int:
    from hemoscan.reporting.report import write_results, write_series_results
    from schema.jobs import find_job

    write = write_series_results if args.series else write_results
    with _sessions().begin() as session:
        write(session, find_job(session, args.job), args.positives, args.csv, Console())
    return 0


def _heatmap(args: argparse.Namespace) -> int:
    from hemoscan.reporting.heatmap import render_heatmap
    from hemoscan.storage import write_atomic
    from schema.jobs import find_job

    with _sessions().begin() as session:
        job = find_job(session, args.job)
        rendered = render_heatmap(session, job, args.key, get_settings(), args.slice)
    write_atomic(args.out, rendered.png)
    where = f" slice {rendered.slice_index} of {rendered.slices}" if rendered.slices > 1 else ""
    verdict = "flagged" if rendered.label else "not flagged"
    console.print(
        f"wrote {args.out}:{where} p={rendered.probability:.4f} ({verdict}); research and "
        "triage only, not a diagnosis"
    )
    return 0


def _dicom_sr(args: argparse.Namespace) -> int:
    return _write_dicom(args.job, args.out, args.flagged, args.write_back)


def _write_dicom(job_ref: str, out: Path | None, flagged: bool, write_back: bool) -> int:
    from hemoscan.reporting.dicom_export import write_series_reports
    from schema.jobs import find_job

    with _sessions().begin() as session:
        job = find_job(session, job_ref)
        done = write_series_reports(
            session, job, get_settings(), out, flagged, write_back=write_back
        )
    where = out or f"the output location ({job.id}/dicom/)"
    reports = len(done.written) - done.maps
    console.print(f"wrote {reports} DICOM SR file(s) and {done.maps} Parametric Map(s) to {where}")
    if write_back:
        console.print(
            f"sent {done.stored} object(s) into their source studies with STOW-RS "
            f"({done.series_stored} series)"
        )
    if done.maps_missing:
        console.print(f"  {done.maps_missing} key slice(s) had no stored map to write")
    for reason, count in sorted(done.skipped.items()):
        console.print(f"  skipped {count} series: {reason}")
    for reason, count in sorted(done.not_stored.items()):
        console.print(f"[red]  not sent back, {count} series: {reason}[/red]")
    console.print("research and triage output, not a diagnosis")
    if done.not_stored:
        console.print("run the same command again to send them (the objects are the same)")
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    import re

    from hemoscan.reporting.html_report import build_report
    from schema.jobs import find_job

    with _sessions().begin() as session:
        job = find_job(session, args.job)
        out = args.out or Path(f"hemoscan-report-{re.sub(r'[^A-Za-z0-9_.-]+', '_', job.name)}.html")
        summary = build_report(
            session,
            job,
            get_settings(),
            out,
            limit=args.limit,
            images=args.images,
            presign_seconds=args.presign,
        )
    console.print(
        f"wrote {summary.path}: {summary.flagged_shown} of {summary.flagged_total} flagged "
        f"image(s) listed, {summary.images_embedded} overlay(s) embedded"
        + (f", {summary.images_missing} unavailable" if summary.images_missing else "")
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hemoscan.cli.demo import run_demo

    return run_demo(get_settings(), args.count, args.seed, args.out, Console(), args.series)
