"""Train the hybrid model on a labelled folder (``hemoscan train``).

Augmentation (training split only, in the tf.data pipeline): flips, rotation, small shifts and
zoom, intensity jitter. Balanced class weights, early stopping on validation ROC AUC with the
best weights restored (and checkpointed while training), a progress bar, then metrics on the
validation split: printed, written to ``MODEL.metrics.json`` and stored in the model metadata.
The model's threshold is the one meeting 95% specificity on the validation split.

Lesion-mask supervision (``mask_weight`` / ``outside_weight`` > 0, training only): when the data
folder has ``masks/`` (the synthetic phantoms do), a training view of the network
(``network.build_training_model``) adds a 1x1 Conv2D + sigmoid head on ``last_conv`` that must
reproduce the lesion mask at last_conv resolution (area-downsampled; an all-zero mask for
negative slices; loss BCE + batch soft Dice, weight ``mask_weight``), and a penalty on the mean
``last_conv`` activation outside the lesion (dilated by one cell; the whole map for negatives;
weight ``outside_weight``). BatchNorm stays frozen unless ``freeze_batch_norm=False``.
Augmentation in this mode: flips only (no rotation / shift / zoom resampling), applied to image
and mask together (one pass over the stacked channels); the intensity jitter to the image only.
The epoch kept is the best by 3 x validation ROC AUC + validation pointing game (Grad-CAM peak
inside the mask dilated by 2 px, over up to ``pointing_subset`` validation positives, as in
``evaluate``). Only the inference network is saved: same layers, same single output; the mask
head is discarded, and the metadata records that phantom lesion masks supervised training.
Measured on the demo (scripts/train_demo.sh notes): the mask head learns the lesions, but the
Grad-CAM pointing game of the classifier did NOT improve, so the demo weights do not use it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def metrics_path(model_path: str | Path) -> Path:
    """``MODEL.keras`` -> ``MODEL.metrics.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".metrics.json")


def _augmenter(seed: int):
    import keras
    from keras import layers

    # Heads are shown in any position and orientation by the phantoms; fill with 0 = air.
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(0.08, fill_mode="constant", fill_value=0.0, seed=seed + 1),
            layers.RandomTranslation(
                0.06, 0.06, fill_mode="constant", fill_value=0.0, seed=seed + 2
            ),
            layers.RandomZoom(0.1, fill_mode="constant", fill_value=0.0, seed=seed + 3),
        ],
        name="augment",
    )


def _datasets(images, labels, train_idx, val_idx, batch_size: int, seed: int):
    import tensorflow as tf

    augment = _augmenter(seed)

    def to_float(x, y):
        return tf.cast(x, tf.float32) / 255.0, y

    def jitter(x, y):
        x = augment(x, training=True)
        n = tf.shape(x)[0]
        gain = tf.random.uniform([n, 1, 1, 1], 0.92, 1.08, seed=seed)
        offset = tf.random.uniform([n, 1, 1, 1], -0.04, 0.04, seed=seed + 7)
        return tf.clip_by_value(x * gain + offset, 0.0, 1.0), y

    y = labels.astype(np.float32)
    train = (
        tf.data.Dataset.from_tensor_slices((images[train_idx], y[train_idx]))
        .shuffle(len(train_idx), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(to_float)
        .map(jitter, num_parallel_calls=1)
        .prefetch(2)
    )
    val = (
        tf.data.Dataset.from_tensor_slices((images[val_idx], y[val_idx]))
        .batch(batch_size)
        .map(to_float)
        .prefetch(2)
    )
    return train, val


def _load_masks(data, size: int) -> np.ndarray:
    """N x size x size uint8 lesion masks (0/255) in model geometry; zeros where none exists."""
    import cv2

    from hybrid_model.preprocess import resize_to_model

    masks = np.zeros((len(data.ids), size, size), np.uint8)
    for i, sid in enumerate(data.ids):
        path = data.masks.get(sid)
        if path is None or data.labels[i] == 0:
            continue
        native = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if native is None or native.shape[:2] != tuple(data.native_shapes[i]):
            continue
        masks[i] = np.round(resize_to_model(native.astype(np.float32), size)).astype(np.uint8)
    return masks


def _mask_targets(mask, factor: int):
    """(N, H, W, 1) mask in [0, 1] -> (soft mask, outside-lesion weight) at last_conv size."""
    import tensorflow as tf

    soft = tf.nn.avg_pool2d(mask, factor, factor, "VALID")
    inside = tf.nn.max_pool2d(tf.cast(soft > 0, tf.float32), 3, 1, "SAME")  # dilated one cell
    return soft, 1.0 - inside


def _mask_datasets(images, masks, labels, train_idx, val_idx, batch_size, seed, factor, weights):
    """Like ``_datasets`` but yielding (image, {outputs}, {sample weights}) for mask supervision."""
    import keras
    import tensorflow as tf

    from hybrid_model.network import LAST_CONV, MASK_HEAD

    # Flips only (exact pixel permutations): rotation / shift / zoom resample every training
    # image bilinearly (smoothed) while validation and real inputs are never resampled. With the
    # full augmentation the mask-supervised fine-tuning sat at validation AUC 0.90-0.94 (0.963
    # before it); with flips only it reached 0.99.
    augment = keras.layers.RandomFlip("horizontal_and_vertical", seed=seed)

    def pack(x, m, y):
        soft, outside = _mask_targets(m, factor)
        w = tf.where(y > 0.5, weights[1], weights[0])
        ones = tf.ones_like(y)
        targets = {"probability": y[:, None], MASK_HEAD: soft, LAST_CONV: outside}
        return x, targets, {"probability": w, MASK_HEAD: ones, LAST_CONV: ones}

    def to_float(x, m, y):
        return tf.cast(x, tf.float32) / 255.0, tf.cast(m[..., None], tf.float32) / 255.0, y

    def jitter(x, m, y):
        # One augmentation pass over image and mask stacked as channels: the same flip moves
        # both.
        both = augment(tf.concat([x, m], axis=-1), training=True)
        x, m = both[..., :3], both[..., 3:]
        n = tf.shape(x)[0]
        gain = tf.random.uniform([n, 1, 1, 1], 0.92, 1.08, seed=seed)
        offset = tf.random.uniform([n, 1, 1, 1], -0.04, 0.04, seed=seed + 7)
        return tf.clip_by_value(x * gain + offset, 0.0, 1.0), m, y

    y = labels.astype(np.float32)
    train = (
        tf.data.Dataset.from_tensor_slices((images[train_idx], masks[train_idx], y[train_idx]))
        .shuffle(len(train_idx), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(to_float)
        .map(jitter, num_parallel_calls=1)
        .map(pack)
        .prefetch(2)
    )
    val = (
        tf.data.Dataset.from_tensor_slices((images[val_idx], masks[val_idx], y[val_idx]))
        .batch(batch_size)
        .map(to_float)
        .map(pack)
        .prefetch(2)
    )
    return train, val


def mask_loss(y_true, y_pred):
    """Per-slice BCE plus the batch's soft Dice loss (defined for all-negative batches too)."""
    import keras
    from keras import ops

    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    overlap = ops.sum(y_true * y_pred)
    dice = 1.0 - (2.0 * overlap + 1.0) / (ops.sum(y_true) + ops.sum(y_pred) + 1.0)
    return bce + dice


def outside_loss(outside, activations):
    """Mean last_conv activation where ``outside`` is 1 (away from the lesion), per slice."""
    from keras import ops

    return ops.mean(outside * activations, axis=(1, 2, 3))


def pointing_rate(model, images: np.ndarray, masks: np.ndarray, batch_size: int = 32) -> float:
    """Grad-CAM pointing game in model geometry: peak inside the mask dilated by 2 px."""
    import cv2

    from hybrid_model.evaluate import POINTING_TOLERANCE_PX
    from hybrid_model.gradcam import GradCam
    from hybrid_model.render import peak

    if len(images) == 0:
        return float("nan")
    cam = GradCam(model, batch_size=batch_size)
    size = 2 * POINTING_TOLERANCE_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    hits = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size].astype(np.float32) / 255.0
        _, maps = cam(chunk)
        for j, cam_map in enumerate(maps):
            row, col = peak(cam_map, cam_map.shape)
            hits += bool(cv2.dilate(masks[start + j], kernel)[row, col] > 0)
    return hits / len(images)


def _pointing_callback(model, images, masks):
    """Adds ``val_pointing`` and ``val_select`` (3 val AUC + val pointing) to the epoch logs."""
    import keras

    class Pointing(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            log.info("validation pointing game before training: %.3f", self._rate())

        def _rate(self) -> float:
            return pointing_rate(model, images, masks)

        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            auc = next((v for k, v in logs.items() if k.startswith("val_") and "auc" in k), 0.0)
            logs["val_pointing"] = self._rate()
            # AUC counts 3x: a 0.01 drop in AUC must buy at least 0.03 of pointing game.
            logs["val_select"] = 3.0 * float(auc) + logs["val_pointing"]
            print(f"epoch {epoch + 1}: val_auc {auc:.4f} val_pointing {logs['val_pointing']:.3f}")

    return Pointing()


def _warm_start(model, initial_model: str | Path) -> None:
    """Copy weights layer by layer (same name and shapes) from another model file.

    Pooling layers carry no weights, so a model with a different number of pooled blocks (a
    finer last_conv) can start from a trained coarser one.
    """
    from hybrid_model.io import load_model

    source = {layer.name: layer for layer in load_model(initial_model).model.layers}
    copied = 0
    for layer in model.layers:
        other = source.get(layer.name)
        weights = other.get_weights() if other is not None else []
        if weights and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied += 1
    log.info("warm start: copied the weights of %d layers from %s", copied, initial_model)


def train(
    data_dir: str | Path,
    out_path: str | Path,
    epochs: int = 15,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 0,
    *,
    size: int = 256,
    patience: int = 4,
    learning_rate: float = 1e-3,
    training_data: str | None = None,
    phantom_trained: bool | None = None,
    initial_model: str | Path | None = None,
    pooled_blocks: int | None = None,
    mask_weight: float = 0.0,
    outside_weight: float = 0.0,
    pointing_subset: int = 160,
    freeze_batch_norm: bool = True,
) -> dict[str, Any]:
    """Train, save the best model to ``out_path`` with metadata, return the validation metrics.

    ``mask_weight`` / ``outside_weight`` > 0 turn on lesion-mask supervision (module docstring);
    the data folder must then have ``masks/`` for its positive slices.
    """
    import keras
    from sklearn.model_selection import train_test_split
    from sklearn.utils.class_weight import compute_class_weight

    from hybrid_model.data import DatasetError, load_labelled
    from hybrid_model.io import DISCLAIMER, save_model
    from hybrid_model.metrics import classification_metrics, render_metrics
    from hybrid_model.network import LAST_CONV, MASK_HEAD, build_model, build_training_model

    keras.utils.set_random_seed(seed)
    started = time.time()
    data = load_labelled(data_dir, size)
    if len(np.unique(data.labels)) < 2:
        raise DatasetError(f"{data_dir}: training needs both classes, found only one")
    idx = np.arange(len(data.labels))
    train_idx, val_idx = train_test_split(
        idx, test_size=val_split, random_state=seed, stratify=data.labels
    )
    log.info("training on %d images, validating on %d", len(train_idx), len(val_idx))
    supervised = mask_weight > 0 or outside_weight > 0
    if not supervised:  # built before the network, as before mask supervision existed
        train_ds, val_ds = _datasets(data.images, data.labels, train_idx, val_idx, batch_size, seed)
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=data.labels[train_idx])

    model = build_model((size, size, 3), pooled_blocks=pooled_blocks)
    if initial_model is not None:
        _warm_start(model, initial_model)
    monitor = "val_auc"
    extra_callbacks = []
    if supervised:
        if not data.masks:
            raise DatasetError(f"{data_dir}: mask supervision needs masks/ beside the images")
        # BatchNorm frozen by default (inference mode, moving statistics fixed) while fine-tuning
        # with the extra losses, so train and inference statistics cannot drift apart; the
        # convolutions and the head still learn.
        batch_norms = [
            layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        ]
        for layer in batch_norms:
            layer.trainable = not freeze_batch_norm
        fit_model = build_training_model(model)
        factor = size // int(model.get_layer(LAST_CONV).output.shape[1])
        masks = _load_masks(data, size)
        log.info(
            "mask supervision: %d lesion masks, weights mask %.2f outside %.2f",
            int((masks.reshape(len(masks), -1).max(axis=1) > 0).sum()),
            mask_weight,
            outside_weight,
        )
        train_ds, val_ds = _mask_datasets(
            data.images,
            masks,
            data.labels,
            train_idx,
            val_idx,
            batch_size,
            seed,
            factor,
            (float(weights[0]), float(weights[1])),
        )
        fit_model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss={
                "probability": "binary_crossentropy",
                MASK_HEAD: mask_loss,
                LAST_CONV: outside_loss,
            },
            loss_weights={"probability": 1.0, MASK_HEAD: mask_weight, LAST_CONV: outside_weight},
            metrics={"probability": [keras.metrics.AUC(name="auc")]},
        )
        positives = val_idx[data.labels[val_idx] == 1][:pointing_subset]
        extra_callbacks.append(_pointing_callback(model, data.images[positives], masks[positives]))
        monitor = "val_select"
        class_weight = None
    else:
        fit_model = model
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc")],
        )
        class_weight = {0: float(weights[0]), 1: float(weights[1])}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out_path.with_name(out_path.stem + ".best.weights.h5")
    callbacks = extra_callbacks + [
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor=monitor, mode="max", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.5, patience=2),
    ]
    history = fit_model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if checkpoint.exists():
        fit_model.load_weights(checkpoint)
        checkpoint.unlink()

    if supervised:
        for layer in batch_norms:  # saved as trainable, like every other demo model
            layer.trainable = True
    probs = model.predict(data.floats(val_idx), batch_size=batch_size, verbose=0).reshape(-1)
    metrics = classification_metrics(data.labels[val_idx], probs)
    metrics["split"] = "validation"
    metrics["epochs_run"] = len(history.history.get("loss", []))
    metrics["train_seconds"] = round(time.time() - started, 1)
    if supervised:
        metrics["lesion_mask_supervision"] = {
            "mask_weight": mask_weight,
            "outside_weight": outside_weight,
            "val_pointing_best": max(history.history.get("val_pointing", [float("nan")])),
        }
    render_metrics(metrics, title=f"validation ({len(val_idx)} images)")

    if phantom_trained is None:
        phantom_trained = any(f.name.startswith("phantom_") for f in data.files)
    description = training_data or (
        f"{len(data.labels)} images from {Path(data_dir).name} "
        f"({int(data.labels.sum())} hemorrhage), seed {seed}, val split {val_split}"
    )
    metadata = {
        "input_size": size,
        "training_data": description,
        "phantom_trained": bool(phantom_trained),
        "clinically_valid": False,
        "metrics": metrics,
        "threshold": metrics["threshold"],
        "disclaimer": DISCLAIMER,
        "seed": seed,
    }
    if supervised:
        metadata["auxiliary_supervision"] = (
            "lesion masks of the synthetic phantoms supervised last_conv during training only "
            f"(1x1 mask head weight {mask_weight}, outside-lesion activation penalty weight "
            f"{outside_weight}; head discarded, not part of this model); phantom-trained, "
            "NOT clinically valid"
        )
    save_model(model, out_path, metadata)
    metrics_path(out_path).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
