"""RAW: forward + Grad-CAM on preloaded, decoded slices, the ceiling of the pipeline.

Measured at the size of the worker's model calls (``model_batch``), so PIPELINE / RAW compares
like with like; batch 32, the previous headline, as well. Report key ``raw`` (``raw_again``
for the second measurement later in the run).
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import Context, load_average, log


def raw_again(ctx: Context) -> None:
    """RAW at the model-call size once more, later in the run: how much the machine moved."""
    raw(ctx, sizes=[ctx.model_batch], key="raw_again")


def raw(ctx: Context, sizes: list[int] | None = None, key: str = "raw") -> None:
    import numpy as np

    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import load_model
    from hybrid_model.preprocess import decode

    loaded = load_model(ctx.model)
    sizes = sizes or sorted({ctx.model_batch, 32}, reverse=True)
    images = np.stack([decode(f.read_bytes(), f.name) for f in ctx.files[: sizes[0]]])
    seconds = 4.0 if ctx.quick else 12.0
    out: dict[str, Any] = {}
    for size in sizes:
        cam = GradCam(loaded.model, model_batch=size)
        batch = images[:size]
        cam(batch)
        cam(batch)
        count, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall0 < seconds:
            cam(batch)
            count += size
        wall = time.perf_counter() - wall0
        out[f"batch_{size}"] = {
            "images_per_s": round(count / wall, 2),
            "cpu_ms_per_image": round((time.process_time() - cpu0) * 1000 / count, 2),
            "traces": cam.traces,
        }
    ctx.report[key] = {
        **out[f"batch_{ctx.model_batch}"],
        "batch": ctx.model_batch,
        "by_batch": out,
        "load": load_average(),
    }
    log(f"{key}: {ctx.report[key]}")
