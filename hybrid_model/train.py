"""Train the hybrid model on a labelled folder (``hemoscan train``).

Augmentation (training split only, in the tf.data pipeline): flips, rotation, small shifts and
zoom, intensity jitter. Balanced class weights, early stopping on validation ROC AUC with the
best weights restored (and checkpointed while training), a progress bar, then metrics on the
validation split: printed, written to ``MODEL.metrics.json`` and stored in the model metadata.
The model's threshold is the one meeting 95% specificity on the validation split.
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
) -> dict[str, Any]:
    """Train, save the best model to ``out_path`` with metadata, return the validation metrics."""
    import keras
    from sklearn.model_selection import train_test_split
    from sklearn.utils.class_weight import compute_class_weight

    from hybrid_model.data import DatasetError, load_labelled
    from hybrid_model.io import DISCLAIMER, save_model
    from hybrid_model.metrics import classification_metrics, render_metrics
    from hybrid_model.network import build_model

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
    train_ds, val_ds = _datasets(data.images, data.labels, train_idx, val_idx, batch_size, seed)
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=data.labels[train_idx])

    model = build_model((size, size, 3), pooled_blocks=pooled_blocks)
    if initial_model is not None:
        _warm_start(model, initial_model)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out_path.with_name(out_path.stem + ".best.weights.h5")
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=0.5, patience=2),
    ]
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        class_weight={0: float(weights[0]), 1: float(weights[1])},
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if checkpoint.exists():
        model.load_weights(checkpoint)
        checkpoint.unlink()

    probs = model.predict(data.floats(val_idx), batch_size=batch_size, verbose=0).reshape(-1)
    metrics = classification_metrics(data.labels[val_idx], probs)
    metrics["split"] = "validation"
    metrics["epochs_run"] = len(history.history.get("loss", []))
    metrics["train_seconds"] = round(time.time() - started, 1)
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
    save_model(model, out_path, metadata)
    metrics_path(out_path).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
