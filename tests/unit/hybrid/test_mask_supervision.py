"""Training-only lesion-mask supervision: one step on a tiny model, the saved model unchanged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hybrid_model.network import LAST_CONV, MASK_HEAD, build_model, build_training_model


def _tiny():
    import keras

    keras.utils.set_random_seed(7)
    return build_model((32, 32, 3), filters=(4, 8, 8), lstm_units=8, gru_units=4, dense_units=4)


def test_training_view_shares_layers_and_keeps_inference_model():
    model = _tiny()
    names = [layer.name for layer in model.layers]
    view = build_training_model(model)
    assert sorted(view.output_names) == sorted(["probability", MASK_HEAD, LAST_CONV])
    assert view.get_layer(LAST_CONV) is model.get_layer(LAST_CONV)
    assert view.get_layer(MASK_HEAD).output.shape[1:] == (8, 8, 1)
    # The inference model is untouched: same layers, one sigmoid output.
    assert [layer.name for layer in model.layers] == names
    assert MASK_HEAD not in names and len(model.outputs) == 1


def test_mask_targets_are_area_downsampled_with_dilated_outside():
    import tensorflow as tf

    from hybrid_model.train import _mask_targets

    mask = np.zeros((1, 32, 32, 1), np.float32)
    mask[0, 8:12, 8:10] = 1.0  # half of one 4x4 cell
    soft, outside = _mask_targets(tf.constant(mask), 4)
    assert soft.shape == (1, 8, 8, 1) and outside.shape == (1, 8, 8, 1)
    assert float(soft[0, 2, 2, 0]) == pytest.approx(0.5) and float(tf.reduce_sum(soft)) == 0.5
    assert float(tf.reduce_sum(1.0 - outside)) == 9.0  # the cell and its 8 neighbours


def test_one_supervised_step_then_saved_model_has_single_output(tmp_path):
    import keras

    from hybrid_model.io import load_model
    from hybrid_model.train import (
        _mask_datasets,
        mask_loss,
        outside_loss,
        pointing_rate,
    )

    rng = np.random.default_rng(0)
    n = 8
    images = (rng.random((n, 32, 32, 3)) * 80).astype(np.uint8)
    masks = np.zeros((n, 32, 32), np.uint8)
    labels = np.array([0, 1] * (n // 2))
    for i in np.flatnonzero(labels):
        masks[i, 10:16, 12:20] = 255
        images[i, 10:16, 12:20] = 230
    model = _tiny()
    names = [layer.name for layer in model.layers]
    before = [w.copy() for w in model.get_layer("conv_last").get_weights()]
    view = build_training_model(model)
    train_ds, val_ds = _mask_datasets(
        images, masks, labels, np.arange(n), np.arange(n), 4, 0, 4, (1.0, 1.0)
    )
    view.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss={"probability": "binary_crossentropy", MASK_HEAD: mask_loss, LAST_CONV: outside_loss},
        loss_weights={"probability": 1.0, MASK_HEAD: 1.0, LAST_CONV: 0.2},
    )
    x, targets, weights = next(iter(train_ds))
    assert targets[MASK_HEAD].shape == (4, 8, 8, 1) and targets[LAST_CONV].shape == (4, 8, 8, 1)
    # Image and mask are augmented together: lesion pixels stay bright after flips/rotations.
    assert float(np.asarray(targets[MASK_HEAD]).sum()) > 0
    view.fit(train_ds.take(1), epochs=1, verbose=0)
    after = model.get_layer("conv_last").get_weights()
    assert any(
        not np.allclose(a, b) for a, b in zip(before, after, strict=True)
    )  # shared weights trained
    rate = pointing_rate(model, images[labels == 1], masks[labels == 1], batch_size=4)
    assert 0.0 <= rate <= 1.0

    from hybrid_model.io import save_model

    path = tmp_path / "tiny.keras"
    save_model(model, path, {"phantom_trained": True, "threshold": 0.5})
    loaded = load_model(path).model
    assert [layer.name for layer in loaded.layers] == names
    assert len(loaded.outputs) == 1 and loaded.output_shape == (None, 1)
    assert loaded.get_layer("logit").activation is keras.activations.linear
    probs = loaded.predict(images.astype(np.float32) / 255.0, verbose=0)
    assert probs.shape == (n, 1) and np.all((probs >= 0) & (probs <= 1))


def test_load_masks_follows_model_geometry(tmp_path):
    from hybrid_model.data import load_labelled
    from hybrid_model.train import _load_masks

    (tmp_path / "masks").mkdir()
    rows = ["id,hemorrhage"]
    for i, label in enumerate([0, 1]):
        img = np.full((64, 64), 60, np.uint16)
        cv2.imwrite(str(tmp_path / f"s{i}.png"), img)
        rows.append(f"s{i},{label}")
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 30:40] = 255
    cv2.imwrite(str(tmp_path / "masks" / "s1.png"), mask)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_labelled(tmp_path, 32)
    masks = _load_masks(data, 32)
    assert masks.shape == (2, 32, 32) and masks[0].max() == 0
    assert masks[1, 5:10, 15:20].min() == 255 and masks[1].sum() == 255 * 25


def test_train_with_mask_supervision_saves_inference_model_only(tmp_path):
    import keras

    from hybrid_model.io import load_model
    from hybrid_model.phantoms import generate
    from hybrid_model.train import train

    generate(tmp_path / "data", 12, seed=5, fmt="png", size=32)
    out = tmp_path / "m.keras"
    metrics = train(
        tmp_path / "data", out, epochs=1, batch_size=4, val_split=0.34, size=32,
        mask_weight=1.0, outside_weight=0.5, pointing_subset=4,
    )  # fmt: skip
    assert metrics["lesion_mask_supervision"]["mask_weight"] == 1.0
    loaded = load_model(out)
    assert len(loaded.model.outputs) == 1 and loaded.model.output_shape == (None, 1)
    names = [layer.name for layer in loaded.model.layers]
    assert MASK_HEAD not in names and LAST_CONV in names and names[-2:] == ["logit", "probability"]
    assert names == [layer.name for layer in build_model((32, 32, 3)).layers]
    assert all(
        layer.trainable
        for layer in loaded.model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert "lesion masks" in loaded.metadata["auxiliary_supervision"]
    assert loaded.metadata["phantom_trained"] is True and not loaded.metadata["clinically_valid"]
