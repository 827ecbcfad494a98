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
    return GradCam(tiny_model, model_batch=4)


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
    cam = GradCam(tiny_model, model_batch=4)
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


@pytest.mark.parametrize(("n_in", "n_out"), [(64, 256), (5, 17), (8, 8), (32, 12)])
def test_bilinear_matrix_matches_tf_resize(n_in, n_out):
    from hybrid_model.gradcam import bilinear_matrix

    x = np.random.default_rng(n_in * n_out).random((n_in, 3), dtype=np.float32)
    expected = tf.image.resize(x[None, :, :, None], (n_out, 3), method="bilinear")
    np.testing.assert_allclose(bilinear_matrix(n_in, n_out) @ x, expected[0, :, :, 0], atol=1e-6)


def _with_head(pool_layer, second_use=None):
    """last_conv, then ``pool_layer`` (or nothing) and a tiny dense head; ``second_use(inputs,
    acts)`` adds another use of last_conv's output, concatenated into the head."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    acts = layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(inputs)
    x = pool_layer(acts) if pool_layer is not None else acts
    x = layers.Flatten()(x)
    if second_use is not None:
        x = layers.Concatenate()([x, second_use(inputs, acts)])
    logit = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, layers.Activation("sigmoid")(logit))


def _reused_pooling(inputs, acts):
    """One GlobalAveragePooling2D called on the input first, then on last_conv."""
    import keras

    pool = keras.layers.GlobalAveragePooling2D()
    return keras.layers.Concatenate()([pool(inputs), pool(acts)])


def _ops_mean(inputs, acts):
    import keras

    return keras.ops.mean(acts, axis=(1, 2))


HEADS = {
    "max pool tiling": (lambda L: _with_head(L.MaxPooling2D((2, 4))), True),
    "max pool 3 on 16 (a valid remainder)": (lambda L: _with_head(L.MaxPooling2D(3)), True),
    "overlapping windows": (lambda L: _with_head(L.MaxPooling2D(3, strides=1)), False),
    "second consumer layer": (
        lambda L: _with_head(L.MaxPooling2D((2, 4)), lambda i, a: L.GlobalAveragePooling2D()(a)),
        False,
    ),
    "second consumer keras.ops": (lambda L: _with_head(L.MaxPooling2D((2, 4)), _ops_mean), False),
    "second consumer, a reused layer": (
        lambda L: _with_head(L.MaxPooling2D((2, 4)), _reused_pooling),
        False,
    ),
    "average pooling": (lambda L: _with_head(L.AveragePooling2D(2)), False),
    "no pooling": (lambda L: _with_head(None), False),
}


@pytest.mark.parametrize("head", HEADS)
def test_gradient_target_and_maps_follow_the_definition(head, images):
    """The gradient is taken at a max pooling's output only where that pooling tiles last_conv
    and is its only use; on every head the unnormalised map (before the ReLU) and the served map
    equal the definition computed by autodiff at last_conv."""
    import keras
    from keras import layers

    from hybrid_model.gradcam import gradcam_model, weighted_activations

    make, shortcut = HEADS[head]
    model = make(layers)
    view = gradcam_model(model)
    assert (view.outputs[1] is not view.outputs[0]) == shortcut
    imgs = tf.image.resize(images, (16, 16)).numpy()
    weighted, _, _ = weighted_activations(view, tf.constant(imgs))
    to_logit = keras.Model(
        model.inputs, [model.get_layer("last_conv").output, model.get_layer("logit").output]
    )
    with tf.GradientTape() as tape:
        acts, logit = to_logit(imgs, training=False)
        total = tf.reduce_sum(logit)
    alpha = tf.reduce_mean(tape.gradient(total, acts), axis=(1, 2))
    expected = np.einsum("nhwc,nc->nhw", acts.numpy(), alpha.numpy())
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(weighted.numpy(), expected, atol=1e-6 * np.abs(expected).max())
    _, maps = GradCam(model)(imgs)
    for i in range(len(imgs)):
        np.testing.assert_allclose(maps[i], _definition(model, imgs[i]), atol=2e-3)


def _definition(model, image: np.ndarray) -> np.ndarray:
    """Grad-CAM by the book on a whole model: d(logit)/dA by autodiff of the logit sub-model."""
    import keras

    to_logit = keras.Model(
        model.inputs, [model.get_layer("last_conv").output, model.get_layer("logit").output]
    )
    with tf.GradientTape() as tape:
        acts, logit = to_logit(image[None], training=False)
    grad = tape.gradient(logit, acts).numpy()[0].astype(np.float64)
    alpha = grad.mean(axis=(0, 1))
    coarse = np.maximum((acts.numpy()[0] * alpha).sum(axis=-1), 0).astype(np.float32)
    fine = cv2.resize(coarse, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return fine / (fine.max() + 1e-12) if fine.max() > 0 else fine


def test_explain_gives_the_logit_and_the_evidence_vector_of_each_image(cam, tiny_model, images):
    """What the series stage stores per slice: the logit layer's output (calibrated, unsaturated)
    and the row_max evidence vector, the same as the model's own layers give, batch or not."""
    import keras

    out = cam.explain(images)
    view = keras.Model(
        tiny_model.inputs,
        [tiny_model.get_layer("logit").output, tiny_model.get_layer("row_max").output],
    )
    logits, embeddings = (np.asarray(t) for t in view(images, training=False))
    np.testing.assert_allclose(out.logits, logits[:, 0], atol=1e-4)
    np.testing.assert_allclose(out.embeddings, embeddings, atol=1e-5)
    np.testing.assert_allclose(out.probabilities, 1 / (1 + np.exp(-out.logits)), atol=1e-5)
    assert out.embeddings.shape == (6, cam.embedding_dim) and cam.embedding_dim > 0
    one = cam.explain(images[2:3])
    np.testing.assert_allclose(one.embeddings[0], out.embeddings[2], atol=1e-5)


def test_the_native_map_enlarged_gives_the_full_map_back(cam, images):
    """What the worker stores per image is the explained layer's map (``native``): enlarged
    with OpenCV's bilinear resize (the on-demand overlay) it must be the map the model call
    gave at the input's size, so an overlay drawn later shows what the worker saw."""
    out = cam.explain(images)
    assert out.native.shape == (len(images), *cam.native_shape)
    assert out.native.shape[1] < out.maps.shape[1]  # smaller than the input: the point of it
    assert 0.0 <= out.native.min() and out.native.max() < 1.5
    size = out.maps.shape[2], out.maps.shape[1]
    compared = 0
    for native, full in zip(out.native, out.maps, strict=True):
        if full.max() == 0:  # no positive evidence: both maps empty
            assert native.max() == 0
            continue
        enlarged = cv2.resize(native, size, interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(np.minimum(enlarged, 1.0), full, atol=1e-4)
        compared += 1
    assert compared >= 2  # real maps compared, not only empty ones


def test_a_model_without_a_logit_layer_gets_its_logits_from_the_probabilities():
    """Where the score is the sigmoid output itself, the stored logit is derived from it (a
    probability stored as a logit would be squashed again by the series stage)."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    images = np.random.default_rng(5).random((3, 16, 16, 3), dtype=np.float32)
    out = GradCam(model).explain(images)
    p = np.clip(out.probabilities, 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(out.logits, np.log(p / (1 - p)), atol=1e-4)
    assert out.embeddings.shape == (3, 0)
