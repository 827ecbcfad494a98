"""Grad-CAM: batching, ranges, degenerate input, and the definition recomputed independently."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from hybrid_model.gradcam import GradCam

HEAD_LAYERS = ("column_pool", "rows", "lstm", "gru", "row_max", "dense", "dropout", "logit")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    imgs = rng.random((6, 32, 32, 3), dtype=np.float32) * 0.3
    imgs[:, 10:16, 12:20] += 0.7  # a bright blob gives the maps something to find
    return imgs


@pytest.fixture(scope="module")
def cam(tiny_model) -> GradCam:
    return GradCam(tiny_model, batch_size=4)


def test_shapes_dtypes_and_range(cam, images):
    probs, maps = cam(images)
    assert probs.shape == (6,) and maps.shape == (6, 32, 32)
    assert probs.dtype == np.float32 and maps.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    for m in maps:  # each map is either all zero or peaks at exactly 1
        assert m.max() == 0 or m.max() == pytest.approx(1.0, abs=1e-5)


def test_probabilities_match_the_model(cam, tiny_model, images):
    probs, _ = cam(images)
    np.testing.assert_allclose(probs, tiny_model.predict(images, verbose=0)[:, 0], atol=1e-5)


def test_batched_equals_one_at_a_time(cam, tiny_model, images):
    probs, maps = cam(images)
    single = GradCam(tiny_model)
    for i in range(len(images)):
        p, m = single(images[i : i + 1])
        np.testing.assert_allclose(p[0], probs[i], atol=1e-5)
        np.testing.assert_allclose(m[0], maps[i], atol=1e-4)


def test_fixed_batch_size_traces_once(tiny_model, images):
    cam = GradCam(tiny_model, batch_size=4)
    for n in (1, 3, 4, 6):
        assert cam(images[:n])[1].shape[0] == n
    assert cam._compute.experimental_get_tracing_count() == 1


def test_constant_input_gives_finite_zero_or_unit_maps(cam):
    for value in (0.0, 1.0):
        probs, maps = cam(np.full((2, 32, 32, 3), value, np.float32))
        assert np.isfinite(probs).all() and np.isfinite(maps).all()
        assert maps.min() >= 0 and maps.max() <= 1


def test_model_is_not_mutated(tiny_model, images):
    before = [w.copy() for w in tiny_model.get_weights()]
    config = tiny_model.get_config()
    GradCam(tiny_model)(images[:2])
    assert tiny_model.get_config() == config
    for a, b in zip(before, tiny_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _reference_cam(model, image: np.ndarray) -> np.ndarray:
    """The Grad-CAM definition, computed separately: activations from a feature sub-model,
    d(logit)/dA by autodiff through the head layers re-applied by hand, the rest in numpy/cv2."""
    import keras

    features = keras.Model(model.inputs, model.get_layer("last_conv").output)
    acts = tf.constant(features(image[None], training=False))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        x = acts
        for name in HEAD_LAYERS:
            x = model.get_layer(name)(x, training=False)
    grad = tape.gradient(x, acts).numpy()[0].astype(np.float64)
    a = acts.numpy()[0].astype(np.float64)
    alpha = grad.mean(axis=(0, 1))
    coarse = np.maximum((a * alpha).sum(axis=-1), 0).astype(np.float32)
    fine = cv2.resize(coarse, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return fine / (fine.max() + 1e-12) if fine.max() > 0 else fine


def test_matches_independent_definition(cam, tiny_model, images):
    _, maps = cam(images)
    nonzero = 0
    for i in range(len(images)):
        ref = _reference_cam(tiny_model, images[i])
        nonzero += ref.max() > 0
        np.testing.assert_allclose(maps[i], ref, atol=2e-3)
    assert nonzero > 0
