"""Grad-CAM guidance: fine-tuning that teaches the classifier to look at the bleed.

A classifier can separate bleeding from normal slices while its Grad-CAM peak sits on the skull,
in the air or in normal brain: nothing in a classification loss asks for the evidence to be
where the lesion is. The synthetic phantoms come with lesion masks, so training can ask for it
("right for the right reasons"): for every positive slice of a batch the loss adds a pointing
term computed from the very Grad-CAM map that ``hybrid_model.gradcam`` produces at inference.

Per positive slice, with A the ``last_conv`` activations (h x w x C):

- alpha_k = spatial mean of d(logit)/dA_k (Grad-CAM's channel weights), computed by an inner
  gradient tape INSIDE the training tape, so the loss is differentiated through alpha too
  (second order, through the LSTM and GRU): training can change which channels the head
  weighs, not only where the channels fire; on the demo model a step costs about the same as
  the first-order version;
- cam = ReLU(sum_k alpha_k A_k), the served map at ``last_conv`` resolution;
- p = softmax(temperature x cam / max cam) over the h x w cells (the maximum held constant): a
  soft version of "where the peak is";
- target = per cell, the share of its central pixels inside the lesion mask dilated by 1 px,
  divided by its maximum (``cell_targets``): the upsampled map peaks at a cell's centre, so a
  cell merely touching the lesion is not a target;
- pointing loss = -log(sum p x target), small when the map's mass is on the lesion, plus a
  hinge on the peak itself, max(0, best cell outside the lesion - best cell on it + 0.1): the
  pointing game scores the argmax, and a map can have most of its mass on the lesion while a
  single cell on the skull wins.

Total loss = class-weighted binary cross-entropy on the logit + ``cam_weight`` x the mean
pointing loss of the batch's positive slices. BatchNorm runs in inference mode (moving
statistics fixed, as at inference: the map trained on is the map served) and dropout is off;
every weight, BatchNorm's scale and offset included, learns. Augmentation: random horizontal and
vertical flips (exact pixel permutations, applied to image and mask together) and intensity
jitter; no rotation, shift or zoom, whose resampling would blur images that are never blurred at
inference. The epoch kept is the best by 3 x validation ROC AUC + validation pointing game
(a 0.01 loss of AUC must buy more than 0.03 of pointing game).

The default ``cam_weight`` 0.25 and learning rate 2e-4 are the values the demo weights were
fine-tuned with (scripts/train_demo.sh, stages 3 and 4). What each variant of this loss measured,
the ones not kept included (first order, the softmax term alone, a larger ``cam_weight``, a
frozen head, a training-only mask head): docs/experiments.md, "Grad-CAM guidance loss variants".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Softmax temperature of the pointing loss; the scaled map is in [0, 1], so the peak outweighs an
#: empty cell by up to e**10.
DEFAULT_TEMPERATURE = 10.0
#: Lesion masks are dilated by this many pixels for the targets (the pointing game allows 2).
TOLERANCE_PX = 1
#: Margin of the peak hinge, on the map scaled to [-1, 1].
MARGIN = 0.1
#: Weight of a lesion cell against a normal one in the lesion-map loss.
SEG_POS_WEIGHT = 10.0


@dataclass
class GuidanceResult:
    """What ``guided_fine_tune`` did: per-epoch history and the epoch kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


def cell_targets(masks, factor: int, tolerance: int = TOLERANCE_PX):
    """(N, H, W, 1) masks in [0, 1] -> (N, H/factor, W/factor) pointing targets in [0, 1].

    A cell's target is the share of its central pixels (the 2 x 2 centre for an even
    ``factor``) that lie in the lesion mask dilated by ``tolerance`` pixels. The served map is
    the cell grid upsampled bilinearly, whose maximum falls on those central pixels of the
    winning cell: a cell that only touches the lesion at its border would put the peak a few
    pixels off the lesion. An all-zero mask stays zero.
    """
    import tensorflow as tf

    if tolerance > 0:
        size = 2 * tolerance + 1
        masks = tf.nn.max_pool2d(masks, size, 1, "SAME")
    first, last = (factor - 1) // 2, factor // 2
    centres = [
        masks[:, dy::factor, dx::factor, 0]
        for dy in range(first, last + 1)
        for dx in range(first, last + 1)
    ]
    share = tf.add_n(centres) / float(len(centres))
    return share / (tf.reduce_max(share, axis=(1, 2), keepdims=True) + 1e-8)


def pointing_loss(cam, target, temperature: float = DEFAULT_TEMPERATURE, margin: float = MARGIN):
    """Per-slice pointing loss of maps ``cam`` (N, h, w) against ``target`` (N, h, w) in [0, 1].

    -log(sum softmax(temperature x cam / max|cam|) x target) pulls the map's mass onto the
    lesion; the hinge max(0, best outside cell - best lesion cell + margin), on the same scaled
    map, is about the peak itself: the pointing game scores the argmax, and a map can have
    most of its mass on the lesion while a single cell on the skull still wins.
    """
    import tensorflow as tf

    n = tf.shape(cam)[0]
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(cam), axis=(1, 2), keepdims=True))
    scaled = tf.reshape(cam / (scale + 1e-8), [n, -1])
    target = tf.reshape(target, [n, -1])
    p = tf.nn.softmax(temperature * scaled)
    mass = -tf.math.log(tf.reduce_sum(p * target, axis=1) + 1e-6)
    inside = target > 0
    low = tf.fill(tf.shape(scaled), -2.0)  # below any scaled value
    best_in = tf.reduce_max(tf.where(inside, scaled, low), axis=1)
    best_out = tf.reduce_max(tf.where(inside, low, scaled), axis=1)
    return mass + tf.nn.relu(best_out - best_in + margin)


def lesion_cells(masks, factor: int):
    """(N, H, W, 1) masks in [0, 1] -> (N, H/factor, W/factor, 1): 1 where any pixel of the
    cell is lesion (a 2 mm bleed still marks its cell), the lesion-map head's target."""
    import tensorflow as tf

    return tf.cast(tf.nn.max_pool2d(masks, factor, factor, "VALID") > 0.5, tf.float32)


def lesion_map_loss(seg_logits, cells, pos_weight: float = SEG_POS_WEIGHT):
    """Mean per-cell binary cross-entropy of the lesion-map head, positive cells weighted by
    ``pos_weight`` (lesion cells are rare), over every cell of every slice: normal slices teach
    the mimics (calcifications, dense sinuses, the inner table) as 0."""
    import tensorflow as tf

    loss = tf.nn.weighted_cross_entropy_with_logits(cells, seg_logits, pos_weight)
    return tf.reduce_mean(loss)


def lesion_head(model, layer: str = "last_conv"):
    """The training-only lesion-map head: a 1 x 1 convolution reading ``layer``'s channels.
    It is never saved: the served network is unchanged, but its features must make every
    lesion cell linearly visible, which is dense supervision (one target per cell instead of
    one per slice) for the same conv layers the classifier and Grad-CAM read."""
    import keras

    head = keras.layers.Conv2D(1, 1, name="lesion_map_head")
    head.build(model.get_layer(layer).output.shape)
    return head


def make_train_step(
    model,
    optimizer,
    cam_weight: float,
    temperature: float,
    layer: str,
    seg_weight: float = 0.0,
    head=None,
):
    """A compiled step: (images, masks, labels, sample weights) -> (bce, pointing, lesion-map
    loss). ``cam_weight`` 0 skips Grad-CAM's inner tape (a first-order step, about half the
    cost); ``seg_weight`` > 0 needs ``head`` (``lesion_head``), trained with the network."""
    import tensorflow as tf

    from hybrid_model.gradcam import gradcam_model, weighted_activations

    # The layer's activations once more as the view's extra output: one forward pass gives the
    # Grad-CAM map, the logit and what the lesion-map head reads.
    view = gradcam_model(model, layer, (layer,))
    factor = int(model.input_shape[1]) // int(model.get_layer(layer).output.shape[1])
    variables = list(model.trainable_variables)
    if seg_weight > 0:
        variables += list(head.trainable_variables)
    zero = tf.constant(0.0)

    @tf.function(reduce_retracing=True)
    def step(images, masks, labels, weights):
        with tf.GradientTape() as outer:
            if cam_weight > 0:
                cam, logit, _, (acts,) = weighted_activations(view, images, with_extras=True)
                cam = tf.nn.relu(cam)  # the served map (see the module docstring)
                target = cell_targets(masks, factor)
                positive = tf.cast(tf.reduce_max(target, axis=(1, 2)) > 0, tf.float32)
                point = tf.reduce_sum(pointing_loss(cam, target, temperature) * positive)
                point = point / tf.maximum(tf.reduce_sum(positive), 1.0)
            else:  # first order: the forward pass alone
                acts, _, logit, _, _ = view(images, training=False)
                point = zero
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels[:, None], logit)[:, 0]
            bce = tf.reduce_sum(bce * weights) / tf.reduce_sum(weights)
            loss = bce + cam_weight * point
            seg = zero
            if seg_weight > 0:
                seg = lesion_map_loss(head(acts), lesion_cells(masks, factor))
                loss = loss + seg_weight * seg
        optimizer.apply_gradients(zip(outer.gradient(loss, variables), variables, strict=True))
        return bce, point, seg

    return step


def _augment(
    rng: np.random.Generator, images: np.ndarray, masks: np.ndarray, grey_share: float = 0.0
):
    """Grey exports of random windows (``augment.windowed_grey``), flips (same for image and
    mask) and per-slice gain/offset jitter; float32 out."""
    from hybrid_model.augment import windowed_grey

    x = windowed_grey(images, rng, grey_share).astype(np.float32) / 255.0
    m = masks.astype(np.float32)[..., None] / 255.0
    if rng.random() < 0.5:
        x, m = x[:, ::-1], m[:, ::-1]
    if rng.random() < 0.5:
        x, m = x[:, :, ::-1], m[:, :, ::-1]
    n = len(x)
    gain = rng.uniform(0.92, 1.08, (n, 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(-0.04, 0.04, (n, 1, 1, 1)).astype(np.float32)
    return np.clip(x * gain + offset, 0.0, 1.0), np.ascontiguousarray(m)


def pointing_rate(cam, images: np.ndarray, masks: np.ndarray) -> float:
    """Grad-CAM pointing game in model geometry (as ``evaluate``: peak within 2 px of the mask)
    of ``cam`` (a ``GradCam``) on uint8 ``images`` and their uint8 ``masks``."""
    from hybrid_model.evaluate import pointing_hit
    from hybrid_model.render import peak

    if len(images) == 0:
        return float("nan")
    hits, chunk = 0, 64  # images converted to float a chunk at a time
    for start in range(0, len(images), chunk):
        _, maps = cam(images[start : start + chunk].astype(np.float32) / 255.0)
        for mask, cam_map in zip(masks[start : start + chunk], maps, strict=True):
            hits += pointing_hit(mask, peak(cam_map, cam_map.shape))
    return hits / len(images)


def validation_scores(model, cam, images, labels, masks, batch_size: int, pointing_subset: int):
    """(ROC AUC, pointing game on up to ``pointing_subset`` true positives at the threshold
    meeting 95 % specificity on these images), as ``hemoscan evaluate`` reports them."""
    from sklearn.metrics import roc_auc_score

    from hybrid_model.metrics import threshold_at_specificity

    probs = model.predict(images.astype(np.float32) / 255.0, batch_size=batch_size, verbose=0)
    probs = probs.reshape(-1)
    auc = float(roc_auc_score(labels, probs))
    threshold, _, _ = threshold_at_specificity(labels, probs)
    found = np.flatnonzero((labels == 1) & (probs >= threshold))[:pointing_subset]
    return auc, pointing_rate(cam, images[found], masks[found])


def guided_fine_tune(
    model,
    images: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 2e-4,
    cam_weight: float = 0.25,
    temperature: float = DEFAULT_TEMPERATURE,
    class_weights: tuple[float, float] = (1.0, 1.0),
    sample_weights: np.ndarray | None = None,
    patience: int = 4,
    seed: int = 0,
    pointing_subset: int = 200,
    layer: str = "last_conv",
    grey_share: float = 0.0,
    seg_weight: float = 0.0,
    checkpoint: str | Path | None = None,
    max_seconds: float | None = None,
    show: bool = True,
    pointing_weight: float = 1.0,
    pointing_floor: float | None = None,
) -> GuidanceResult:
    """Fine-tune ``model`` in place with the Grad-CAM pointing loss; keep the best epoch.

    ``images`` are uint8 N x H x W x 3 (as ``data.LabelledSet``), ``masks`` uint8 N x H x W in
    the model's geometry (0 for negatives). The model ends with the weights of the best epoch.
    ``cam_weight`` 0 with ``seg_weight`` > 0 trains with the lesion-map head only (first order).
    ``sample_weights``: per image of ``images``, multiplied into the class weights.
    The learning rate halves after two epochs without a better score. ``max_seconds``: no
    epoch starts that would end past this budget (judged by the longest epoch so far).
    ``pointing_weight``: the epoch kept is the best by 3 x validation ROC AUC + this x the
    validation pointing game (0: by ROC AUC alone, for a network whose maps already point).
    ``pointing_floor``: only epochs whose validation pointing game reaches it are kept
    (``epoch_score``); the start is kept when none does.
    """
    import keras

    from hybrid_model.gradcam import GradCam

    rng = np.random.default_rng(seed)
    # Clipped: the second-order pointing term can spike on a hard batch and kill the ReLUs.
    optimizer = keras.optimizers.Adam(learning_rate, clipnorm=1.0)
    head = lesion_head(model, layer) if seg_weight > 0 else None
    step = make_train_step(model, optimizer, cam_weight, temperature, layer, seg_weight, head)
    result = GuidanceResult()
    # One GradCam for every validation pass: it reads the live weights, so it is traced once.
    cam = GradCam(model, layer_name=layer, model_batch=batch_size)
    val_args = (cam, images[val_idx], labels[val_idx], masks[val_idx], batch_size, pointing_subset)
    auc, pointing = validation_scores(model, *val_args)
    log.info("before guidance: validation ROC AUC %.4f, pointing game %.3f", auc, pointing)
    if show:
        print(f"before Grad-CAM guidance: val_auc {auc:.4f} val_pointing {pointing:.3f}")
    best_score = epoch_score(auc, pointing, pointing_weight, pointing_floor)
    best_weights, stale = model.get_weights(), 0
    order = np.array(train_idx)
    steps = max(1, len(order) // batch_size)
    begun, longest = time.time(), 0.0
    for epoch in range(1, epochs + 1):
        started = time.time()
        if max_seconds is not None and started - begun + longest > max_seconds:
            log.info("time budget of %.0f s reached after %d epochs", max_seconds, epoch - 1)
            if show:
                print(f"time budget reached after {epoch - 1} epochs")
            break
        rng.shuffle(order)
        bar = keras.utils.Progbar(steps, verbose=keras_verbosity(show), unit_name="batch")
        sums = np.zeros(3)
        for i in range(steps):
            idx = np.sort(order[i * batch_size : (i + 1) * batch_size])
            x, m = _augment(rng, images[idx], masks[idx], grey_share)
            y = labels[idx].astype(np.float32)
            w = np.where(y > 0.5, class_weights[1], class_weights[0]).astype(np.float32)
            if sample_weights is not None:
                w = w * sample_weights[idx]
            losses = [float(v) for v in step(x, m, y, w)]
            sums += losses
            shown = zip(
                ("bce", "pointing_loss", "lesion_map_loss"),
                losses,
                (1, cam_weight, seg_weight),
                strict=True,
            )
            bar.update(i + 1, [(name, v) for name, v, on in shown if on])
        auc, pointing = validation_scores(model, *val_args)
        record = {
            "epoch": epoch,
            "bce": round(sums[0] / steps, 5),
            "pointing_loss": round(sums[1] / steps, 5),
            "lesion_map_loss": round(sums[2] / steps, 5),
            "learning_rate": float(optimizer.learning_rate.numpy()),
            "val_auc": round(auc, 5),
            "val_pointing": round(pointing, 4),
            "seconds": round(time.time() - started, 1),
        }
        result.history.append(record)
        longest = max(longest, time.time() - started)
        if show:
            print(
                f"epoch {epoch}/{epochs}: val_auc {auc:.4f} val_pointing {pointing:.3f} "
                f"({record['seconds']:.0f} s)"
            )
        score = epoch_score(auc, pointing, pointing_weight, pointing_floor)
        if score > best_score:
            best_score, best_weights, stale = score, model.get_weights(), 0
            result.best_epoch = epoch
        else:
            stale += 1
            if stale >= patience:
                break
            if stale % 2 == 0:  # a plateau: halve the step (as ReduceLROnPlateau)
                optimizer.learning_rate.assign(optimizer.learning_rate * 0.5)
        if checkpoint is not None and result.best_epoch == epoch:
            model.save_weights(checkpoint)  # a session that ends keeps the best epoch so far
    model.set_weights(best_weights)
    return result


def epoch_score(
    auc: float, pointing: float, pointing_weight: float, pointing_floor: float | None = None
) -> float:
    """What the guided loop keeps the best epoch by: 3 x validation ROC AUC + ``pointing_weight``
    x the validation pointing game, or -inf when the pointing game is under ``pointing_floor``.

    A floor rather than a weight: the pointing game moves by 0.2 between epochs where ROC AUC
    moves by 0.005, so any weight on it keeps whichever epoch points best, while a floor lets
    ROC AUC choose among the epochs whose maps still point (docs/experiments.md, session 18)."""
    if pointing_floor is not None and pointing < pointing_floor:
        return float("-inf")
    return 3.0 * auc + pointing_weight * pointing


def keras_verbosity(show: bool) -> int:
    """Keras progress bar: live on a terminal, one line per epoch in a log, none if not shown."""
    import sys

    if not show:
        return 0
    return 1 if sys.stdout.isatty() else 2


def describe(
    result: GuidanceResult, cam_weight: float, temperature: float, seg_weight: float = 0.0
) -> dict[str, Any]:
    """The JSON-able summary stored in the metrics and the model metadata."""
    return {
        "method": "Grad-CAM pointing loss and/or a training-only lesion-map head on phantom "
        "lesion masks (hybrid_model/guidance.py)",
        "cam_weight": cam_weight,
        "seg_weight": seg_weight,
        "temperature": temperature,
        "best_epoch": result.best_epoch,
        "history": result.history,
    }
