"""Batched Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) on the model's last convolutional activation.

For each image: alpha_k = spatial mean of d(score)/d(A_k); map = ReLU(sum_k alpha_k A_k);
bilinear upsampling to the input size; division by the map's maximum plus an epsilon, so an
all-zero map stays zero (never NaN). The whole batch goes through ONE gradient tape: each image's
score depends only on its own activations (BatchNorm runs in inference mode), so the gradient of
the summed scores with respect to the batched activations is every image's own gradient.

The arithmetic is arranged for cost (channel weights from the gradient at a tiling max pool's
output, the weighted sum as one einsum, upsampling as two matrix products); what each step
measured: docs/experiments.md, "Grad-CAM arithmetic".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Added to the per-image maximum: an all-zero map divides by EPSILON and stays zero (no NaN), and
# being far below any real activation it leaves a non-zero map's maximum at 1.
EPSILON = 1e-12


def gradcam_model(model, layer_name: str = "last_conv", extra_layers: tuple[str, ...] = ()):
    """A functional view of ``model`` (same layers and weights, the model itself untouched)
    returning (activations A of ``layer_name``, gradient target, score, probability), then the
    outputs of ``extra_layers`` (e.g. the evidence vector the series stage reads).

    The score is the pre-sigmoid logit when the model exposes it (our network has a linear
    "logit" layer before the sigmoid): the sigmoid saturates for confident predictions, so
    d(probability)/dA -> 0 and the maps of the clearest bleeds would vanish; the logit is
    monotone in the probability, so it ranks the same evidence.

    The gradient target is A itself, or, when A's only consumer is a max pooling whose windows
    tile A without overlap (our ``column_pool``), that pooling's output P. A max pooling passes
    each window's gradient to the one activation that won the window and zero to the others, so
    the sum of d(score)/dA over a window is d(score)/dP for that window, and the spatial sum of
    d(score)/dA (which the channel weights need) is the spatial sum of d(score)/dP: the same
    number, without materialising an N x h x w x C gradient that is almost all zeros.
    """
    import keras

    names = {layer.name for layer in model.layers}
    score = model.get_layer("logit").output if "logit" in names else model.output
    acts = model.get_layer(layer_name).output
    pooled = _tiling_max_pool_output(model, acts)
    target = pooled if pooled is not None else acts
    extras = [model.get_layer(name).output for name in extra_layers]
    return keras.Model(model.inputs, [acts, target, score, model.output, *extras])


def _tiling_max_pool_output(model, tensor):
    """The output of the MaxPooling2D call that is the only use of ``tensor`` in ``model`` (every
    call of every operation counted, ``keras.ops`` calls and reused layers included) when its
    windows do not overlap (strides == pool size, 'valid' padding, channels last); else None."""
    from keras import layers

    # Keras has no public list of a tensor's consumers: read the operations' call records.
    uses = [
        node
        for operation in model.operations
        for node in operation._inbound_nodes
        if any(t is tensor for t in node.input_tensors)
    ]
    if len(uses) != 1 or not isinstance(uses[0].operation, layers.MaxPooling2D):
        return None
    pool = uses[0].operation
    tiles = tuple(pool.strides) == tuple(pool.pool_size) and pool.padding == "valid"
    return uses[0].output_tensors[0] if tiles and pool.data_format == "channels_last" else None


def weighted_activations(view, images, with_extras: bool = False):
    """The Grad-CAM map BEFORE its ReLU, at the layer's resolution (N, h, w), with the scores
    and probabilities: alpha_k = spatial mean of d(score)/dA_k, map = sum_k alpha_k A_k; with
    ``with_extras``, a fourth item: the list of the view's ``extra_layers`` outputs.

    ``view`` is a ``gradcam_model``. Called under an enclosing gradient tape (training with
    Grad-CAM guidance), the map stays differentiable in the weights through both A and alpha.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        acts, target, score, prob, *extras = view(images, training=False)
        total = tf.reduce_sum(score)
    grads = tape.gradient(total, target)  # each image's own gradient (see gradcam_model)
    cells = float(acts.shape[1] * acts.shape[2])
    alpha = tf.reduce_sum(grads, axis=(1, 2)) / cells  # (N, C): the spatial mean over A
    # One batched matrix-vector product, not alpha * A summed over channels: no N x h x w x C
    # temporary (docs/experiments.md, "Grad-CAM arithmetic").
    weighted = tf.einsum("nhwc,nc->nhw", acts, alpha)
    return (weighted, score, prob, extras) if with_extras else (weighted, score, prob)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bilinear resampling with half-pixel centres, edges clamped: the
    sampling of ``tf.image.resize(method="bilinear")`` and OpenCV's INTER_LINEAR (when enlarging).
    ``A @ x`` resamples x along its first axis."""
    weights = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        pos = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n_in - 1)
        frac = pos - lo
        weights[i, lo] += 1.0 - frac
        weights[i, hi] += frac
    return weights


@dataclass(frozen=True)
class Explained:
    """What one model call gives per image: the probability, the Grad-CAM map in [0, 1] at the
    input's size, the calibrated logit, the evidence vector (``EMBED_LAYER``; N x 0 when the
    model has none) and the map at the explained layer's own size (``native``: 64 x 64 for a
    256 input) on the same scale, so its peak may pass 1 a little: enlarged bilinearly
    (OpenCV's INTER_LINEAR) and clipped at 1 it is ``maps``. The worker stores it for every
    image (``workers.pipeline``): 1/16 of the bytes."""

    probabilities: np.ndarray
    maps: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray
    native: np.ndarray


# The slice network's evidence vector, read by the series stage (hybrid_model.series).
EMBED_LAYER = "row_max"


class GradCam:
    """Probabilities and Grad-CAM maps for a batch in one call; never mutates ``model``.

    Args:
        model: a Keras model with a single sigmoid output.
        layer_name: the activation to explain (``last_conv`` in ``network.build_model``).
        model_batch: when given, every call runs on batches of exactly this size (the last one
            zero-padded, results sliced back), so the tf.function is traced once, ever (the
            worker's HEMOSCAN_MODEL_BATCH).
    """

    def __init__(self, model, layer_name: str = "last_conv", model_batch: int | None = None):
        import tensorflow as tf

        self.model_batch = model_batch
        self.input_shape = tuple(int(d) for d in model.input_shape[1:])
        names = {layer.name for layer in model.layers}
        # Without a "logit" layer the score is the probability itself: its logit is derived.
        self._score_is_logit = "logit" in names
        extra = (EMBED_LAYER,) if EMBED_LAYER in names else ()
        self._grad_model = gradcam_model(model, layer_name, extra)
        self.embedding_dim = int(model.get_layer(EMBED_LAYER).output.shape[-1]) if extra else 0
        h, w = (int(d) for d in self._grad_model.outputs[0].shape[1:3])
        self.native_shape = (h, w)
        # Upsampling as two small matrix products (rows, then columns): the same bilinear
        # weights as tf.image.resize, at about 60 % of its op time for 64 -> 256 (3.1 vs 5.2 ms
        # at batch 32 in the TF profiler).
        self._rows = tf.constant(bilinear_matrix(h, self.input_shape[0]))
        self._cols = tf.constant(bilinear_matrix(w, self.input_shape[1]))
        spec = tf.TensorSpec((model_batch, *self.input_shape), tf.float32)
        self._compute = tf.function(self._maps, input_signature=[spec], reduce_retracing=True)

    @property
    def traces(self) -> int:
        """How many times the compiled call has been traced so far (1 once called, with
        ``model_batch`` set: every call has one shape; bench/README.md counts it)."""
        return int(self._compute.experimental_get_tracing_count())

    def _maps(self, images):
        import tensorflow as tf

        weighted, score, prob, extras = weighted_activations(
            self._grad_model, images, with_extras=True
        )
        native = tf.nn.relu(weighted)
        cam = tf.einsum("Hh,nhw->nHw", self._rows, native)
        cam = tf.einsum("nHw,Ww->nHW", cam, self._cols)
        # Non-negative weights keep the map >= 0; the minimum only absorbs rounding above 1.
        scale = 1.0 / (tf.reduce_max(cam, axis=(1, 2), keepdims=True) + EPSILON)
        n = tf.shape(images)[0]
        embedding = tf.cast(extras[0], tf.float32) if extras else tf.zeros((n, 0), tf.float32)
        prob = tf.reshape(tf.cast(prob, tf.float32), [-1])
        if self._score_is_logit:
            logit = tf.reshape(tf.cast(score, tf.float32), [-1])
        else:
            p = tf.clip_by_value(prob, 1e-7, 1.0 - 1e-7)
            logit = tf.math.log(p) - tf.math.log1p(-p)
        return prob, tf.minimum(cam * scale, 1.0), logit, embedding, native * scale

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) float32 -> (probabilities (N,), maps (N, H, W) in [0, 1]) as float32."""
        out = self.explain(images)
        return out.probabilities, out.maps

    def explain(self, images: np.ndarray) -> Explained:
        """(N, H, W, 3) float32 -> ``Explained`` (probabilities, maps, logits, embeddings)."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        n = images.shape[0]
        if n == 0:
            return Explained(
                np.zeros((0,), np.float32),
                np.zeros((0, *self.input_shape[:2]), np.float32),
                np.zeros((0,), np.float32),
                np.zeros((0, self.embedding_dim), np.float32),
                np.zeros((0, *self.native_shape), np.float32),
            )
        if self.model_batch is None:
            return Explained(*(t.numpy() for t in self._compute(images)))
        parts: list[list[np.ndarray]] = [[], [], [], [], []]
        for start in range(0, n, self.model_batch):
            chunk = images[start : start + self.model_batch]
            real = chunk.shape[0]
            if real < self.model_batch:
                pad = np.zeros((self.model_batch - real, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            for out, tensor in zip(parts, self._compute(chunk), strict=True):
                out.append(tensor.numpy()[:real])
        if len(parts[0]) == 1:  # one call: no 8 MB copy into a concatenation
            return Explained(*(p[0] for p in parts))
        return Explained(*(np.concatenate(p) for p in parts))
