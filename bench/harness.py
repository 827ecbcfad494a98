"""What every figure of the bench shares: where the services are, the model and the phantoms,
the environment of the ``hemoscan`` processes it starts, the run's context, machine info and
the JSON report. The figures live in one module each (bench/README.md lists them).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_model.bench import load_average

if TYPE_CHECKING:
    from hemoscan.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".scratch" / "bench"
RESULTS = ROOT / "bench" / "results"
BUCKET = "hemoscan-bench"
REDIS_URL = os.environ.get("HEMOSCAN_BENCH_REDIS", "redis://127.0.0.1:6379/0")
DB_URL = os.environ.get(
    "HEMOSCAN_BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
S3_URL = os.environ.get("HEMOSCAN_BENCH_S3", "http://127.0.0.1:8333")
HEMOSCAN = [sys.executable, "-m", "hemoscan.cli"]
# The bench's own pseudonym secret (distributed mode requires one; the phantoms hold no patient).
PSEUDONYM_KEY = "hemoscan-bench-pseudonyms-not-for-real-data"

# The local services' credentials (scripts/services.sh), for boto3 in this process.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "hemoscan")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "hemoscan-secret")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["load_average"]  # re-exported: every figure records the load it ran under


@dataclass
class Context:
    """One run: what every figure needs, and the report each adds its figures to."""

    model: Path
    files: list[Path]
    batch_size: int  # keys per task (HEMOSCAN_BATCH_SIZE)
    model_batch: int  # images per model call (HEMOSCAN_MODEL_BATCH): what RAW is measured at
    quick: bool
    report: dict[str, Any]


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


def settings(**extra: Any) -> Settings:
    """Settings for this process's own stores and runtime (SeaweedFS, the scratch folder)."""
    from hemoscan.settings import load_settings

    extra.setdefault("pseudonym_key", PSEUDONYM_KEY)
    return load_settings(s3_endpoint_url=S3_URL, data_dir=SCRATCH / "data", **extra)


def base_env(model: Path, **extra: str) -> dict[str, str]:
    """Environment of a ``hemoscan`` process: none of this shell's HEMOSCAN_ variables."""
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
        HEMOSCAN_PSEUDONYM_KEY=PSEUDONYM_KEY,
        **extra,
    )


def cli(args: list[str], env: dict[str, str], timeout: float = 3600) -> str:
    """Run ``hemoscan ARGS``; its output, or RuntimeError with the tail of it."""
    proc = subprocess.run(
        [*HEMOSCAN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"hemoscan {args[0]} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout + proc.stderr


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tensorflow = version("tensorflow")
    except PackageNotFoundError:  # pragma: no cover - a tensorflow-cpu or -macos install
        tensorflow = "n/a"
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tensorflow,
    }


def write_report(report: dict[str, Any], out: Path | None = None) -> Path:
    """The report as JSON under bench/results/ (gitignored) unless ``out`` says where."""
    out = out or RESULTS / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    return out
