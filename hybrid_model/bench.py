"""Throughput of forward-only vs forward+Grad-CAM inference (``hemoscan model-bench``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def _timed(fn, images: np.ndarray, seconds: float) -> float:
    """images/s of ``fn`` called in a loop for about ``seconds`` (at least 2 calls)."""
    calls, started = 0, time.perf_counter()
    while True:
        fn(images)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 2:
            return calls * len(images) / elapsed


def _paired_rates(forward, gradcam, images: np.ndarray, seconds: float, rounds: int):
    """Median rates of ``forward`` and ``gradcam``, measured in alternating short rounds.

    Alternating (forward, Grad-CAM, forward, ...) exposes both to the same load, so their ratio
    (median of the per-round ratios) survives a machine whose load drifts; a block of one then
    a block of the other would not.
    """
    forward(images)  # warm-up: trace and allocate
    gradcam(images)
    per_round = seconds / rounds
    pairs = [
        (_timed(forward, images, per_round), _timed(gradcam, images, per_round))
        for _ in range(rounds)
    ]
    fwd = float(np.median([f for f, _ in pairs]))
    cam = float(np.median([c for _, c in pairs]))
    return fwd, cam, float(np.median([c / f for f, c in pairs]))


def run_bench(
    model_path: str | Path | None = None,
    batches=(1, 8, 32),
    seconds: float = 3.0,
    show: bool = True,
    rounds: int = 5,
) -> dict[str, Any]:
    """images/s per batch size for forward-only and forward+Grad-CAM; ratio at the largest batch.

    ``seconds`` per method and batch size, split into ``rounds`` alternating rounds; figures
    are medians over the rounds, the ratio the median of the per-round ratios.
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
        cam = GradCam(model, batch_size=batch)
        forward, with_cam, ratio = _paired_rates(
            lambda x, f=forward_fn: f(x).numpy(), cam, images, seconds, rounds
        )
        rows.append({"batch": batch, "forward": forward, "gradcam": with_cam, "ratio": ratio})
    result = {
        "device": _device(),
        "model": loaded.metadata.get("version"),
        "rounds": rounds,
        "load_average": _load_average(),
        "rows": rows,
    }
    if show:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"model-bench ({result['device']}, images/s, medians of {rounds} "
            "alternating rounds)"
        )
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
            f"ratio at batch {last['batch']}: {last['ratio']:.3f} (target >= 0.85); "
            f"load average {result['load_average']}; {loaded.note}"
        )
    return result


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU x{len(gpus)}" if gpus else "CPU"


def _load_average() -> str:
    import os

    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"
