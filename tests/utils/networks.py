"""Tiny, untrained networks and images for model tests (fast to build and run on 2 CPU cores)."""

from __future__ import annotations

from typing import Any

import numpy as np


def tiny_network(seed: int = 1234) -> Any:
    """The real architecture at 32x32 input with few units, its weights drawn from ``seed``."""
    import keras

    from hybrid_model.network import build_model

    keras.utils.set_random_seed(seed)
    return build_model((32, 32, 3), filters=(4, 8, 8), lstm_units=8, gru_units=4, dense_units=4)


def blob_images(n: int = 4, seed: int = 3) -> np.ndarray:
    """``n`` 32x32 RGB images of faint noise with one bright blob (rows 8-13, columns 18-25)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 32, 32, 3), dtype=np.float32) * 0.3
    images[:, 8:14, 18:26] += 0.7
    return images
