"""Throughput of forward-only vs forward+Grad-CAM inference (``hemoscan model-bench``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def _paired_rates(forward, gradcam, images: np.ndarray, seconds: float):
    """Rates of ``forward`` and ``gradcam`` from the medians of their per-call times.

    The two are called alternately (forward, Grad-CAM, forward, ...) for about 2 x ``seconds``
    in all, so both see the same load at nearly the same moment, and a median ignores the calls
    that the rest of a busy machine interrupted. Returns (forward images/s, Grad-CAM images/s,
    their ratio, calls of each).
    """
    forward(images)  # warm-up: trace and allocate
    gradcam(images)
    times: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    while time.perf_counter() - started < 2 * seconds or len(times[1]) < 3:
        for fn, spent in zip((forward, gradcam), times, strict=True):
            t = time.perf_counter()
            fn(images)
            spent.append(time.perf_counter() - t)
    fwd, cam = (float(np.median(spent)) for spent in times)
    return len(images) / fwd, len(images) / cam, fwd / cam, len(times[0])


def run_bench(
    model_path: str | Path | None = None,
    batches=(1, 8, 32),
    seconds: float = 3.0,
    show: bool = True,
) -> dict[str, Any]:
    """images/s per batch size for forward-only and forward+Grad-CAM; ratio at the largest batch.

    About 2 x ``seconds`` per batch size, the two called alternately; each rate is the
    batch size over the median time of a call, the ratio that of the two medians.
    """
    import tensorflow as tf

    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import DEMO_MODEL_PATH, load_model

    loaded = load_model(model_path or DEMO_MODEL_PATH)
    model = loaded.model
    size = loaded.input_size
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        images = rng.random((batch, size, size, 3), dtype=np.float32)
        spec = tf.TensorSpec((batch, size, size, 3), tf.float32)
        forward_fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        cam = GradCam(model, model_batch=batch)
        forward, with_cam, ratio, calls = _paired_rates(
            lambda x, f=forward_fn: f(x).numpy(), cam, images, seconds
        )
        rows.append(
            {
                "batch": batch,
                "forward": forward,
                "gradcam": with_cam,
                "ratio": ratio,
                "calls": calls,
            }
        )
    result = {
        "device": _device(),
        "model": loaded.metadata.get("version"),
        "load_average": load_average(),
        "rows": rows,
    }
    if show:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"model-bench ({result['device']}, images/s from median call times, the two "
            "called alternately)"
        )
        for col in ("batch", "forward only", "forward + Grad-CAM", "ratio", "calls"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                str(r["batch"]),
                f"{r['forward']:.1f}",
                f"{r['gradcam']:.1f}",
                f"{r['ratio']:.3f}",
                str(r["calls"]),
            )
        console = Console()
        console.print(table)
        last = rows[-1]
        console.print(
            f"ratio at batch {last['batch']}: {last['ratio']:.3f} (target >= 0.85); "
            f"load average {result['load_average']}; {loaded.note}"
        )
    return result


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU x{len(gpus)}" if gpus else "CPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for figures measured on a shared machine."""
    import os

    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"
