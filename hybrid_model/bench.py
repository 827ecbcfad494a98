"""Throughput of forward-only vs forward+Grad-CAM inference (``hemoscan model-bench``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def _rate(fn, images: np.ndarray, seconds: float) -> float:
    fn(images)  # warm-up: trace and allocate
    calls, started = 0, time.perf_counter()
    while True:
        fn(images)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 3:
            return calls * len(images) / elapsed


def run_bench(
    model_path: str | Path | None = None,
    batches=(1, 8, 32),
    seconds: float = 3.0,
    show: bool = True,
) -> dict[str, Any]:
    """images/s per batch size for forward-only and forward+Grad-CAM; ratio at the largest batch."""
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
        cam = GradCam(model, batch_size=batch)
        forward = _rate(lambda x, f=forward_fn: f(x).numpy(), images, seconds)
        with_cam = _rate(cam, images, seconds)
        rows.append(
            {"batch": batch, "forward": forward, "gradcam": with_cam, "ratio": with_cam / forward}
        )
    result = {"device": _device(), "model": loaded.metadata.get("version"), "rows": rows}
    if show:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"model-bench ({result['device']}, images/s)")
        for col in ("batch", "forward only", "forward + Grad-CAM", "ratio"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                str(r["batch"]), f"{r['forward']:.1f}", f"{r['gradcam']:.1f}", f"{r['ratio']:.3f}"
            )
        console = Console()
        console.print(table)
        last = rows[-1]
        console.print(
            f"ratio at batch {last['batch']}: {last['ratio']:.3f} (target >= 0.85); {loaded.note}"
        )
    return result


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU x{len(gpus)}" if gpus else "CPU"
