"""Grad-CAM guidance while training: guided steps point the map at the lesion, and
`train(cam_weight=...)` keeps the served network and records its history."""

from __future__ import annotations

import numpy as np
import pytest

from tests.utils.networks import blob_images, tiny_network

pytestmark = pytest.mark.slow


def test_guided_steps_move_the_peak_onto_the_mask():
    """Steps on one batch lower its pointing loss (seed 13: an untrained tiny net whose maps are
    not all zero at the start; an all-zero ReLU map has no gradient to follow)."""
    import keras

    from hybrid_model.guidance import make_train_step

    model = tiny_network(13)
    images = blob_images(8, seed=5)
    masks = np.zeros((8, 32, 32, 1), np.float32)
    masks[:4, 24:30, 2:8] = 1.0  # a lesion away from the bright blob, in the positives
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    images[:4, 24:30, 2:8] += 0.4
    step = make_train_step(model, keras.optimizers.Adam(0.003), 1.0, 10.0, "last_conv")
    weights = np.ones(8, np.float32)
    losses = [float(step(images, masks, labels, weights)[1]) for _ in range(40)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_train_with_guidance_saves_the_same_network_with_its_history(tmp_path):
    from hybrid_model.io import load_model
    from hybrid_model.network import build_model
    from hybrid_model.phantoms import generate
    from hybrid_model.train import train

    generate(tmp_path / "data", 16, seed=5, fmt="png", size=32)
    out = tmp_path / "m.keras"
    metrics = train(
        tmp_path / "data", out, epochs=2, batch_size=4, val_split=0.25, size=32,
        cam_weight=1.0, pointing_subset=4, patience=5,
    )  # fmt: skip
    guidance = metrics["gradcam_guidance"]
    assert guidance["cam_weight"] == 1.0 and len(guidance["history"]) == 2
    assert 0 <= guidance["best_epoch"] <= 2
    for record in guidance["history"]:
        assert np.isfinite(record["bce"]) and np.isfinite(record["pointing_loss"])
    loaded = load_model(out)
    names = [layer.name for layer in loaded.model.layers]
    assert names == [layer.name for layer in build_model((32, 32, 3)).layers]
    assert len(loaded.model.outputs) == 1
    assert "Grad-CAM pointing loss" in loaded.metadata["auxiliary_supervision"]
    assert loaded.metadata["phantom_trained"] is True
