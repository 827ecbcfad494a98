"""PIPELINE (embedded): ``hemoscan scan FOLDER`` with no services (SQLite, a local folder,
in-process), and its CPU per image. Report key ``embedded``.

The CPU per image is a difference of two scans (``n_images`` and 32 images, ``RUSAGE_CHILDREN``):
the process's fixed start-up (imports, loading the model) cancels out.
"""

from __future__ import annotations

import shutil
import uuid
from typing import Any

from bench.harness import SCRATCH, Context, base_env, cli, load_average, log
from bench.procstat import children_cpu
from bench.services import archive_folder, job_rate

SMALL = 32  # images of the scan whose CPU is subtracted


def embedded(ctx: Context, n_images: int) -> None:
    cpu_s: dict[int, float] = {}
    result: dict[str, Any] = {}
    for count in (SMALL, n_images):
        folder = archive_folder(ctx.files[:count])
        data = SCRATCH / f"embedded-{uuid.uuid4().hex[:6]}"
        env = base_env(
            ctx.model,
            HEMOSCAN_DATA_DIR=str(data),
            HEMOSCAN_BATCH_SIZE=str(ctx.batch_size),
            HEMOSCAN_MODEL_BATCH=str(ctx.model_batch),
        )
        cpu0 = children_cpu()
        cli(["scan", str(folder), "--job", "bench-embedded"], env)
        cpu_s[count] = children_cpu() - cpu0
        if count == n_images:
            result = job_rate(f"sqlite:///{data}/hemoscan.db", "bench-embedded")
        shutil.rmtree(data, ignore_errors=True)
    result["load"] = load_average()
    result["cpu_ms_per_image"] = round(
        (cpu_s[n_images] - cpu_s[SMALL]) * 1000 / (n_images - SMALL), 2
    )
    ctx.report["embedded"] = result
    log(f"embedded: {result['images_per_s']} img/s, {result['cpu_ms_per_image']} CPU ms/img")
