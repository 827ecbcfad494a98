"""The pipeline against the bare model and the per-image baseline, in one run on one machine.

    .venv/bin/python -m bench.pipeline_bench            # full run (about 15 minutes on 2 cores)
    .venv/bin/python -m bench.pipeline_bench --quick    # smoke run (about 4 minutes)

Needs Redis, PostgreSQL and SeaweedFS (``scripts/services.sh start``). Figures (see
bench/README.md for what each one means):

RAW        forward + Grad-CAM on preloaded tensors at the pipeline's batch size: the ceiling.
PIPELINE   ``hemoscan scan s3://... --wait`` with ONE worker process (as on a 1-GPU node) on
           Redis, PostgreSQL and SeaweedFS; images/s from the job's creation to the last
           committed prediction row. Also the embedded mode (SQLite, a folder, in-process).
BASELINE   a fresh ``hemoscan predict FILE --heatmaps DIR`` process per image.
NAIVE      one image per task (``--batch-size 1``) on a worker whose model call takes 1 image.
SCALE      PIPELINE with 1 and 2 worker processes, and the images/s one core feeds once the
           model's CPU moves to a GPU.
Plus: worker CPU ms per image outside the model call (thread CPU time per stage), worker
RSS after 100 and after ``--long`` images, producer keys/s and peak memory for a 100k-key
manifest (messages to a throwaway queue, deleted after), and record_batch rows/s.

Prints a table and writes every figure to bench/results/pipeline-<time>.json. This module
only runs the steps: the shared set-up is bench/harness.py and bench/services.py, and each
figure is measured by its own module (bench/README.md: "Layout").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    baseline,
    database,
    distributed,
    embedded,
    producer_rate,
    raw,
    scale,
    stages,
    summary,
)
from bench.harness import (
    SCRATCH,
    Context,
    load_average,
    log,
    machine_info,
    model_path,
    phantoms,
    write_report,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--images", type=int, default=None, help="PIPELINE images (1000)")
    parser.add_argument("--long", type=int, default=None, help="images for the RSS run (5000)")
    parser.add_argument("--keys", type=int, default=None, help="producer listing (100000)")
    parser.add_argument("--baseline", type=int, default=None, help="BASELINE images (10)")
    parser.add_argument("--naive", type=int, default=None, help="NAIVE images (300)")
    parser.add_argument("--batch-size", type=int, default=None, help="keys per task (setting)")
    parser.add_argument("--model-batch", type=int, default=None, help="images per model call")
    parser.add_argument(
        "--only", default="", help="comma list: raw,dist,embedded,profile,scale,baseline,..."
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    n_images = args.images or (200 if quick else 1000)
    n_long = args.long or (500 if quick else 5000)
    n_keys = args.keys or (20_000 if quick else 100_000)
    n_base = args.baseline or (3 if quick else 10)
    n_naive = args.naive or (64 if quick else 300)
    only = {p for p in args.only.split(",") if p}

    from hemoscan.settings import Settings

    batch_size = args.batch_size or Settings.model_fields["batch_size"].default
    model_batch = min(args.model_batch or Settings.model_fields["model_batch"].default, batch_size)

    SCRATCH.mkdir(parents=True, exist_ok=True)
    model, model_note = model_path()
    machine = machine_info()
    report: dict[str, object] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "model": str(model),
        "model_note": model_note,
        "batch_size": batch_size,
        "model_batch": model_batch,
        "input_size": 256,
        "cpus": machine["cpus"],
        "machine": machine,
        "workers": "one worker process, concurrency 1 (as on a 1-GPU node)",
        "load_at_start": load_average(),
    }
    ctx = Context(
        model=model,
        files=phantoms(n_images),
        batch_size=batch_size,
        model_batch=model_batch,
        quick=quick,
        report=report,
    )
    profile_images = min(n_images, max(640, 5 * batch_size))
    steps: list[tuple[str, Callable[[], None]]] = [
        ("raw", lambda: raw.raw(ctx)),
        ("dist", lambda: distributed.distributed(ctx, n_images, n_long, n_naive)),
        ("embedded", lambda: embedded.embedded(ctx, n_images)),
        ("raw", lambda: raw.raw_again(ctx)),
        ("profile", lambda: stages.worker_cpu(ctx, profile_images)),
        ("scale", lambda: scale.scale_out(ctx, n_images)),
        ("baseline", lambda: baseline.baseline(ctx, n_base)),
        ("producer", lambda: producer_rate.producer(ctx, n_keys)),
        ("db", lambda: database.db_writes(ctx)),
    ]
    for name, step in steps:
        if not only or name in only:
            log(f"{name} (load {load_average()})")
            step()
    report["load_at_end"] = load_average()
    summary.ratios(report)
    out = write_report(report, args.out)
    summary.print_table(report)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
