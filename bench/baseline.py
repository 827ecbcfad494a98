"""BASELINE: a fresh ``hemoscan predict FILE --heatmaps DIR --batch-size 1`` process per image
(load the model, read, predict, Grad-CAM, write the overlay). Report key ``baseline``.
"""

from __future__ import annotations

import time

from bench.harness import SCRATCH, Context, base_env, cli, load_average, log


def baseline(ctx: Context, n: int) -> None:
    out_dir = SCRATCH / "baseline-heatmaps"
    env = base_env(ctx.model)
    times = []
    for f in ctx.files[:n]:
        t0 = time.perf_counter()
        cli(
            ["predict", str(f), "--model", str(ctx.model), "--heatmaps", str(out_dir)]
            + ["--batch-size", "1"],
            env,
        )
        times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    ctx.report["baseline"] = {
        "images": n,
        "seconds_per_image": round(mean, 3),
        "images_per_s": round(1 / mean, 4),
        "command": "hemoscan predict FILE --heatmaps DIR --batch-size 1 (one process per image)",
        "load": load_average(),
    }
    log(f"baseline: {mean:.2f} s per image")
