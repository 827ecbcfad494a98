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
Plus: worker CPU ms per image outside the model call (thread CPU time per stage), worker
RSS after 100 and after ``--long`` images, producer keys/s and peak memory for a 100k-key
manifest (messages to a throwaway queue, deleted after), and record_batch rows/s.

Prints a table and writes every figure to bench/results/pipeline-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from hybrid_model.bench import load_average

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".scratch" / "bench"
RESULTS = ROOT / "bench" / "results"
BUCKET = "hemoscan-bench"
REDIS_URL = os.environ.get("HEMOSCAN_BENCH_REDIS", "redis://127.0.0.1:6379/0")
DB_URL = os.environ.get(
    "HEMOSCAN_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
S3_URL = os.environ.get("HEMOSCAN_BENCH_S3", "http://127.0.0.1:8333")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def model_path() -> tuple[Path, str]:
    """The demo model when it is there, else an untrained model of the same architecture."""
    from hybrid_model.io import DEMO_MODEL_PATH

    if DEMO_MODEL_PATH.is_file():
        return DEMO_MODEL_PATH, "demo"
    standin = SCRATCH / "standin-256.keras"
    if not standin.is_file():
        from hybrid_model.io import save_model
        from hybrid_model.network import build_model

        save_model(
            build_model((256, 256, 3)),
            standin,
            {"training_data": "untrained stand-in (bench)", "phantom_trained": True},
        )
    return standin, "stand-in: build_model((256, 256, 3)), untrained (demo.keras not committed)"


def phantoms(count: int) -> list[Path]:
    from hybrid_model.phantoms import generate

    folder = SCRATCH / f"phantoms-{count}"
    files = sorted(p for p in folder.glob("*") if p.suffix in (".dcm", ".png"))
    if len(files) < count:
        generate(folder, count=count, seed=11, fmt="mixed", size=256)
        files = sorted(p for p in folder.glob("*") if p.suffix in (".dcm", ".png"))
    return files[:count]


def base_env(model: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMOSCAN_")}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID", "hemoscan"),
        AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY", "hemoscan-secret"),
        HEMOSCAN_MODEL_PATH=str(model),
        HEMOSCAN_DATA_DIR=str(SCRATCH / "data"),
    )
    env.update(extra)
    return env


def dist_env(model: Path, queue: str, **extra: str) -> dict[str, str]:
    return base_env(
        model,
        HEMOSCAN_BROKER_URL=REDIS_URL,
        HEMOSCAN_DATABASE_URL=DB_URL,
        HEMOSCAN_S3_ENDPOINT_URL=S3_URL,
        HEMOSCAN_OUTPUT_LOCATION=f"s3://{BUCKET}/heatmaps",
        HEMOSCAN_QUEUE=queue,
        **extra,
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
    parser.add_argument("--only", default="", help="comma list: raw,dist,embedded,baseline,...")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    n_images = args.images or (200 if quick else 1000)
    n_long = args.long or (500 if quick else 5000)
    n_keys = args.keys or (20_000 if quick else 100_000)
    n_base = args.baseline or (3 if quick else 10)
    n_naive = args.naive or (64 if quick else 300)
    only = {p for p in args.only.split(",") if p}

    from bench import measure
    from hemoscan.settings import Settings

    batch_size = args.batch_size or Settings.model_fields["batch_size"].default
    model_batch = min(args.model_batch or Settings.model_fields["model_batch"].default, batch_size)

    SCRATCH.mkdir(parents=True, exist_ok=True)
    model, model_note = model_path()
    files = phantoms(n_images)
    report: dict[str, object] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "model": str(model),
        "model_note": model_note,
        "batch_size": batch_size,
        "model_batch": model_batch,
        "input_size": 256,
        "cpus": os.cpu_count(),
        "workers": "one worker process, concurrency 1 (as on a 1-GPU node)",
        "load_at_start": load_average(),
    }

    def want(name: str) -> bool:
        return not only or name in only

    ctx = measure.Context(
        model=model,
        files=files,
        batch_size=batch_size,
        model_batch=model_batch,
        quick=quick,
        report=report,
    )
    steps = [
        ("raw", lambda: measure.raw(ctx)),
        ("dist", lambda: measure.distributed(ctx, n_images, n_long, n_naive)),
        ("embedded", lambda: measure.embedded(ctx, n_images)),
        ("raw", lambda: measure.raw_again(ctx)),
        ("profile", lambda: measure.worker_cpu(ctx, min(n_images, max(640, 5 * batch_size)))),
        ("baseline", lambda: measure.baseline(ctx, n_base)),
        ("producer", lambda: measure.producer(ctx, n_keys)),
        ("db", lambda: measure.db_writes(ctx)),
    ]
    for name, step in steps:
        if want(name):
            log(f"{name} (load {load_average()})")
            step()
    report["load_at_end"] = load_average()
    measure.ratios(report)
    out = args.out or RESULTS / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    measure.print_table(report)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["base_env", "dist_env", "log", "load_average", "uuid"]
