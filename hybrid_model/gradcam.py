"""Batched Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) on the model's last convolutional activation.

For each image: alpha_k = spatial mean of d(score)/d(A_k); map = ReLU(sum_k alpha_k A_k);
bilinear upsampling to the input size; division by the map's maximum plus an epsilon, so an
all-zero map stays zero (never NaN). The whole batch goes through ONE gradient tape: each image's
score depends only on its own activations (BatchNorm runs in inference mode), so the gradient of
the summed scores with respect to the batched activations is every image's own gradient.
"""

from __future__ import annotations

import numpy as np

# Added to the per-image maximum: an all-zero map divides by EPSILON and stays zero (no NaN), and
# being far below any real activation it leaves a non-zero map's maximum at 1.
EPSILON = 1e-12


def gradcam_model(model, layer_name: str = "last_conv"):
    """A functional view of ``model`` (same layers and weights, the model itself untouched)
    returning (activations of ``layer_name``, score, probability).

    The score is the pre-sigmoid logit when the model exposes it (our network has a linear
    "logit" layer before the sigmoid): the sigmoid saturates for confident predictions, so
    d(probability)/dA -> 0 and the maps of the clearest bleeds would vanish; the logit is
    monotone in the probability, so it ranks the same evidence.
    """
    import keras

    names = {layer.name for layer in model.layers}
    score = model.get_layer("logit").output if "logit" in names else model.output
    return keras.Model(model.inputs, [model.get_layer(layer_name).output, score, model.output])


def weighted_activations(view, images):
    """The Grad-CAM map BEFORE its ReLU, at the layer's resolution (N, h, w), with the scores
    and probabilities: alpha_k = spatial mean of d(score)/dA_k, map = sum_k alpha_k A_k.

    ``view`` is a ``gradcam_model``. Called under an enclosing gradient tape (training with
    Grad-CAM guidance), the map stays differentiable in the weights through both A and alpha.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        acts, score, prob = view(images, training=False)
        total = tf.reduce_sum(score)
    grads = tape.gradient(total, acts)  # (N, h, w, C), each image's own gradient
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.reduce_sum(alpha * acts, axis=-1), score, prob


class GradCam:
    """Probabilities and Grad-CAM maps for a batch in one call; never mutates ``model``.

    Args:
        model: a Keras model with a single sigmoid output.
        layer_name: the activation to explain (``last_conv`` in ``network.build_model``).
        batch_size: when given, every call runs on batches of exactly this size (the last one
            zero-padded, results sliced back), so the tf.function is traced once, ever.
    """

    def __init__(self, model, layer_name: str = "last_conv", batch_size: int | None = None):
        import tensorflow as tf

        self.batch_size = batch_size
        self.input_shape = tuple(int(d) for d in model.input_shape[1:])
        self._grad_model = gradcam_model(model, layer_name)
        spec = tf.TensorSpec((batch_size, *self.input_shape), tf.float32)
        self._compute = tf.function(self._maps, input_signature=[spec], reduce_retracing=True)

    def _maps(self, images):
        import tensorflow as tf

        weighted, _, prob = weighted_activations(self._grad_model, images)
        cam = tf.nn.relu(weighted)[..., None]
        cam = tf.image.resize(cam, self.input_shape[:2], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = cam / (peak + EPSILON)
        return tf.reshape(tf.cast(prob, tf.float32), [-1]), tf.clip_by_value(cam, 0.0, 1.0)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) float32 -> (probabilities (N,), maps (N, H, W) in [0, 1]) as float32."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        n = images.shape[0]
        if n == 0:
            return np.zeros((0,), np.float32), np.zeros((0, *self.input_shape[:2]), np.float32)
        if self.batch_size is None:
            probs, maps = self._compute(images)
            return probs.numpy(), maps.numpy()
        probs_out, maps_out = [], []
        for start in range(0, n, self.batch_size):
            chunk = images[start : start + self.batch_size]
            real = chunk.shape[0]
            if real < self.batch_size:
                pad = np.zeros((self.batch_size - real, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            probs, maps = self._compute(chunk)
            probs_out.append(probs.numpy()[:real])
            maps_out.append(maps.numpy()[:real])
        return np.concatenate(probs_out), np.concatenate(maps_out)
