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


def _train_tiny(tmp_path, **weights):  # type: ignore[no-untyped-def]
    """Two epochs of ``train`` on 16 tiny phantoms with masks: (metrics, the loaded model, the
    layer names a fresh network of the same shape has)."""
    from hybrid_model.io import load_model
    from hybrid_model.network import build_model
    from hybrid_model.phantoms import generate
    from hybrid_model.train import train

    generate(tmp_path / "data", 16, seed=5, fmt="png", size=32)
    out = tmp_path / "m.keras"
    metrics = train(
        tmp_path / "data", out, epochs=2, batch_size=4, val_split=0.25, size=32,
        pointing_subset=4, patience=5, **weights,
    )  # fmt: skip
    fresh = [layer.name for layer in build_model((32, 32, 3)).layers]
    return metrics, load_model(out), fresh


def test_train_with_guidance_saves_the_same_network_with_its_history(tmp_path):
    metrics, loaded, fresh = _train_tiny(tmp_path, cam_weight=1.0)
    guidance = metrics["gradcam_guidance"]
    assert guidance["cam_weight"] == 1.0 and len(guidance["history"]) == 2
    assert 0 <= guidance["best_epoch"] <= 2
    for record in guidance["history"]:
        assert np.isfinite(record["bce"]) and np.isfinite(record["pointing_loss"])
    assert [layer.name for layer in loaded.model.layers] == fresh
    assert len(loaded.model.outputs) == 1
    assert "Grad-CAM pointing loss" in loaded.metadata["auxiliary_supervision"]
    assert loaded.metadata["phantom_trained"] is True


def test_lesion_map_steps_learn_the_mask_first_order():
    """cam_weight 0, seg_weight 1: first-order steps lower the lesion-map loss of one batch, and
    the head's cells over the lesion end above those elsewhere."""
    import keras
    import tensorflow as tf

    from hybrid_model.guidance import lesion_cells, lesion_head, make_train_step

    model = tiny_network(13)
    images = blob_images(8, seed=5)
    masks = np.zeros((8, 32, 32, 1), np.float32)
    masks[:4, 24:30, 2:8] = 1.0
    images[:4, 24:30, 2:8] += 0.4
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    head = lesion_head(model)
    step = make_train_step(model, keras.optimizers.Adam(0.01), 0.0, 10.0, "last_conv", 1.0, head)
    weights = np.ones(8, np.float32)
    losses = []
    for _ in range(60):
        bce, point, seg = (float(v) for v in step(images, masks, labels, weights))
        assert point == 0.0  # no Grad-CAM tape in a first-order step
        losses.append(seg)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    acts = keras.Model(model.inputs, model.get_layer("last_conv").output)(images)
    seg_map = head(acts).numpy()[..., 0]
    cells = lesion_cells(tf.constant(masks), 4).numpy()[..., 0] > 0
    assert seg_map[cells].mean() > seg_map[~cells].mean() + 1.0


def test_train_with_a_lesion_map_head_saves_the_served_network_only(tmp_path):
    metrics, loaded, fresh = _train_tiny(tmp_path, seg_weight=1.0)
    guidance = metrics["gradcam_guidance"]
    assert guidance["seg_weight"] == 1.0 and guidance["cam_weight"] == 0.0
    assert all(record["pointing_loss"] == 0.0 for record in guidance["history"])
    assert all(np.isfinite(record["lesion_map_loss"]) for record in guidance["history"])
    names = [layer.name for layer in loaded.model.layers]
    assert names == fresh and "lesion_map_head" not in names
    assert "lesion-map head" in loaded.metadata["auxiliary_supervision"]
    assert not (tmp_path / "m.best.weights.h5").exists()


def test_a_pointing_floor_no_epoch_reaches_keeps_the_start(tmp_path):
    """``pointing_floor`` above any pointing game: every epoch runs and none is kept."""
    metrics, _, _ = _train_tiny(tmp_path, seg_weight=1.0, pointing_floor=1.01)
    guidance = metrics["gradcam_guidance"]
    assert len(guidance["history"]) == 2 and guidance["best_epoch"] == 0


@pytest.mark.parametrize("guided", [False, True])
def test_train_with_skull_base_and_small_lesion_emphasis(tmp_path, monkeypatch, guided):
    """Both training loops get the per-image weights (the plain one as Keras sample weights
    with the class weights folded in): skull-base slices 3x and small lesions 2x the others of
    their class; the metadata says what was weighted."""
    from hybrid_model import guidance
    from hybrid_model import train as training
    from hybrid_model.io import load_model
    from hybrid_model.phantoms import generate

    data = tmp_path / "data"
    generate(data, 16, seed=5, fmt="png", size=32)
    stems = sorted(p.stem for p in data.glob("phantom_*.png"))
    base = {s for k, s in enumerate(stems) if k % 2}
    small = set(stems[:10])  # 40 k px x 0.25 mm2 < 100 mm2 for k < 10
    with open(data / "slices.csv", "w") as fh:  # the CT phantoms' tables, by hand
        fh.write("id,series,level,hemorrhage,lesion_pixels\n")
        fh.writelines(
            f"{s},a,{0.1 if s in base else 0.6},0,{k * 40}\n" for k, s in enumerate(stems)
        )
    (data / "series.csv").write_text("series,spacing_mm\na,0.5\n")
    seen: dict[str, object] = {}
    real_datasets, real_guided = training._datasets, guidance.guided_fine_tune

    def datasets(images, labels, *args):  # type: ignore[no-untyped-def]
        seen["labels"], seen["weights"] = labels, args[-1]
        return real_datasets(images, labels, *args)

    def guided_loop(model, images, masks, labels, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["labels"], seen["weights"] = labels, kwargs["sample_weights"]
        return real_guided(model, images, masks, labels, *args, **kwargs)

    monkeypatch.setattr(training, "_datasets", datasets)
    monkeypatch.setattr(guidance, "guided_fine_tune", guided_loop)
    out = tmp_path / "m.keras"
    training.train(
        data, out, epochs=1, batch_size=4, val_split=0.25, size=32, pointing_subset=4,
        base_weight=3.0, small_weight=2.0, seg_weight=1.0 if guided else 0.0,
    )  # fmt: skip
    labels, weights = np.asarray(seen["labels"]), np.asarray(seen["weights"])
    ids = [line.split(",")[0] for line in (data / "labels.csv").read_text().splitlines()[1:]]
    assert sorted(ids) == stems and len(weights) == len(ids)
    if not guided:  # the plain loop's weights carry the class weights: divide them out
        for cls in (0, 1):
            weights = np.where(labels == cls, weights / weights[labels == cls].min(), weights)
    for cls in (0, 1):
        rows = [(i, w) for i, w, lab in zip(ids, weights, labels, strict=True) if lab == cls]
        plain = min(w for _, w in rows)
        for i, w in rows:
            expected = (3.0 if i in base else 1.0) * (2.0 if cls == 1 and i in small else 1.0)
            assert w / plain == pytest.approx(expected, rel=1e-5), (i, cls)
    assert "x3 for skull-base slices" in load_model(out).metadata["emphasis"]
