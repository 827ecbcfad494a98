"""Train the hybrid model on a labelled folder (``hemoscan train``).

Augmentation (training split only, in the tf.data pipeline): flips, rotation, small shifts and
zoom, intensity jitter. Balanced class weights, early stopping on validation ROC AUC with the
best weights restored (and checkpointed while training), a progress bar, then metrics on the
validation split: printed, written to ``MODEL.metrics.json`` and stored in the model metadata.
Then temperature scaling on the validation split (``calibrate``: folded into the logit layer,
so every consumer of the model gets calibrated probabilities; ECE before and after are printed
and stored), and the model's threshold is the one meeting 95% specificity on the calibrated
validation probabilities.

Grad-CAM guidance (``cam_weight`` > 0): when the data folder has lesion masks (``masks/``, as
the synthetic phantoms do), training adds a pointing loss on the model's own Grad-CAM map so its
peak lands on the lesion; see ``hybrid_model.guidance`` (its own loop: flips and intensity
jitter only, BatchNorm in inference mode, best epoch by 3 x validation AUC + validation pointing
game). The saved network is the same network; the metadata records that phantom lesion masks
guided its training.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_model.evaluate import SKULL_BASE_LEVEL, SMALL_LESION_MM2

log = logging.getLogger(__name__)


def metrics_path(model_path: str | Path) -> Path:
    """``MODEL.keras`` -> ``MODEL.metrics.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".metrics.json")


def checkpoint_path(model_path: str | Path) -> Path:
    """``MODEL.keras`` -> ``MODEL.best.weights.h5``: the best epoch's weights while training."""
    path = Path(model_path)
    return path.with_name(path.stem + ".best.weights.h5")


def _augmenter(seed: int):
    import keras
    from keras import layers

    # Heads lie at varied positions, sizes and rotations (as in the phantoms); fill with 0: black
    # in every window, as air is.
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


def _datasets(
    images,
    labels,
    train_idx,
    val_idx,
    batch_size: int,
    seed: int,
    grey_share: float = 0.0,
    sample_weights: np.ndarray | None = None,
):
    import tensorflow as tf

    from hybrid_model.augment import windowed_grey

    augment = _augmenter(seed)
    rng = np.random.default_rng(seed + 11)

    # Each element is (x, y) or (x, y, sample weight); the maps pass the rest through.
    def grey(x, *rest):
        x = tf.numpy_function(lambda b: windowed_grey(b, rng, grey_share), [x], tf.uint8)
        return tf.ensure_shape(x, [None, *images.shape[1:]]), *rest

    def to_float(x, *rest):
        return tf.cast(x, tf.float32) / 255.0, *rest

    def jitter(x, *rest):
        x = augment(x, training=True)
        n = tf.shape(x)[0]
        gain = tf.random.uniform([n, 1, 1, 1], 0.92, 1.08, seed=seed)
        offset = tf.random.uniform([n, 1, 1, 1], -0.04, 0.04, seed=seed + 7)
        return tf.clip_by_value(x * gain + offset, 0.0, 1.0), *rest

    y = labels.astype(np.float32)
    parts: tuple[np.ndarray, ...] = (images[train_idx], y[train_idx])
    if sample_weights is not None:
        parts = (*parts, sample_weights[train_idx].astype(np.float32))
    train = (
        tf.data.Dataset.from_tensor_slices(parts)
        .shuffle(len(train_idx), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(grey, num_parallel_calls=1)
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
        frame = data.frames[i] if data.frames else None
        masks[i] = np.round(resize_to_model(native.astype(np.float32), size, frame)).astype(
            np.uint8
        )
    return masks


def is_phantom_folder(root: Path, files: list[Path]) -> bool:
    """Whether a training folder holds hemoscan's synthetic phantoms: the CT generator's marker
    (PHANTOMS.txt) or tables (slices.csv), or the simple generator's phantom_* names."""
    return (
        (root / "PHANTOMS.txt").is_file()
        or (root / "slices.csv").is_file()
        or any(f.name.startswith("phantom_") for f in files)
    )


def split(data, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices, split by group (``data.groups``: the patient for RSNA,
    the study for CQ500, the series folder for the phantoms; ``hybrid_model.layouts``), so no
    group has images on both sides (neighbouring slices are near copies: a split by slice
    would validate on the training data); images without groups (a flat folder) are split by
    image, stratified by label."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    idx = np.arange(len(data.labels))
    groups = list(data.groups) or [""] * len(idx)
    grouped = all(groups) and len(set(groups)) >= 5
    if grouped:
        splitter = GroupShuffleSplit(n_splits=20, test_size=val_split, random_state=seed)
        for train_idx, val_idx in splitter.split(idx, data.labels, groups):
            if (
                len(np.unique(data.labels[val_idx])) == 2
                and len(np.unique(data.labels[train_idx])) == 2
            ):
                log.info("split by group: %d groups", len(set(groups)))
                return train_idx, val_idx
        log.warning("no split by group has both classes on both sides: splitting by image")
    train_idx, val_idx = train_test_split(
        idx, test_size=val_split, random_state=seed, stratify=data.labels
    )
    return train_idx, val_idx


def widen(old: np.ndarray, new: np.ndarray) -> np.ndarray | None:
    """``old`` embedded in ``new`` (a freshly initialised weight of a wider layer), or None if
    it does not fit: the leading corner takes ``old``; a kernel's rows for the new input
    channels (axis -2) feeding the old outputs are zero, so those outputs are unchanged while
    the new channels start from their initialisation."""
    if old.ndim != new.ndim or any(o > n for o, n in zip(old.shape, new.shape, strict=True)):
        return None
    out = np.array(new, copy=True)
    out[tuple(slice(0, o) for o in old.shape)] = old
    if old.ndim >= 2:
        out[(..., slice(old.shape[-2], None), slice(0, old.shape[-1]))] = 0.0
    return out


def _warm_start(model, initial_model: str | Path) -> None:
    """Copy weights layer by layer (same name) from another model file.

    Pooling layers carry no weights, so a model with a different number of pooled blocks (a
    finer last_conv) can start from a trained coarser one. A wider network (more conv filters,
    ``build_model(filters=...)``) starts from a narrower one with its function unchanged
    (``widen``): each old filter keeps its weights and ignores the new ones, which start from
    their initialisation, and the first recurrent layer ignores the new channels. Recurrent
    and dense layers must keep their width (their gates would not line up).
    """
    from keras import layers as klayers

    from hybrid_model.io import load_model

    source = {layer.name: layer for layer in load_model(initial_model).model.layers}
    copied = widened = 0
    for layer in model.layers:
        other = source.get(layer.name)
        weights = other.get_weights() if other is not None else []
        current = layer.get_weights()
        if not weights or len(weights) != len(current):
            continue
        if isinstance(layer, klayers.RNN | klayers.Dense) and (
            weights[0].shape[1:] != current[0].shape[1:]
        ):
            continue  # a different number of units: the gates would not line up
        # Same shapes: a plain copy. BatchNormalization: new channels keep gamma 1, beta 0,
        # mean 0, variance 1.
        embedded = [widen(o, n) for o, n in zip(weights, current, strict=True)]
        if all(e is not None for e in embedded):
            layer.set_weights(embedded)
            same = all(o.shape == n.shape for o, n in zip(weights, current, strict=True))
            copied, widened = copied + same, widened + (not same)
    log.info(
        "warm start: copied the weights of %d layers, widened %d, from %s",
        copied,
        widened,
        initial_model,
    )


def emphasis(
    root: Path,
    ids: list[str],
    labels: np.ndarray,
    train_idx: np.ndarray,
    base_weight: float = 1.0,
    small_weight: float = 1.0,
) -> np.ndarray | None:
    """Per-image loss multipliers (None when both are 1): skull-base slices x ``base_weight``,
    hemorrhage slices with a lesion under ``SMALL_LESION_MM2`` x ``small_weight``, then scaled
    so each class's mean over the training split is 1 (the class weights keep the balance
    between the classes; the emphasis only moves weight within a class). Needs the CT
    phantoms' tables (``synth.write.slice_facts``); images they do not list keep 1."""
    from hybrid_model.data import DatasetError
    from hybrid_model.synth.write import slice_facts

    if base_weight <= 0 or small_weight <= 0:
        raise DatasetError("emphasis weights must be positive")
    if base_weight == 1 and small_weight == 1:
        return None
    facts = slice_facts(root)
    if not facts:
        raise DatasetError(
            f"{root}: skull-base and small-lesion weights need a CT phantom folder "
            "(slices.csv and series.csv, as hemoscan phantoms --series writes)"
        )
    out = np.ones(len(ids), np.float64)
    for i, sid in enumerate(ids):
        level, area = facts.get(sid, (0.5, SMALL_LESION_MM2))
        if level < SKULL_BASE_LEVEL:
            out[i] *= base_weight
        if labels[i] == 1 and area < SMALL_LESION_MM2:
            out[i] *= small_weight
    chosen = np.zeros(len(ids), bool)
    chosen[train_idx] = True
    for cls in (0, 1):
        m = labels == cls
        if (m & chosen).any():
            out[m] /= out[m & chosen].mean()
    return out.astype(np.float32)


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
    row_steps: int | None = 8,
    cam_weight: float = 0.0,
    cam_temperature: float | None = None,
    pointing_subset: int = 200,
    filters: tuple[int, ...] | None = None,
    grey_share: float = 0.0,
    target_specificity: float = 0.95,
    seg_weight: float = 0.0,
    max_minutes: float | None = None,
    base_weight: float = 1.0,
    small_weight: float = 1.0,
    calibration: str = "platt",
    context_blocks: int = 0,
    pointing_weight: float = 1.0,
    pointing_floor: float | None = None,
    framing: str = "letterbox",
) -> dict[str, Any]:
    """Train, save the best model to ``out_path`` with metadata, return the validation metrics.

    ``cam_weight`` > 0 trains with Grad-CAM guidance (``hybrid_model.guidance``); the data
    folder must then have ``masks/`` for its positive slices. ``filters``: conv filters per
    block (default ``network.DEFAULT_FILTERS``; with ``initial_model`` a wider network starts
    from a narrower one, see ``_warm_start``). ``grey_share``: the share of three-window
    training slices redrawn per batch as grey exports of a random window
    (``augment.windowed_grey``). ``target_specificity``: the stored threshold is the lowest
    reaching it on the calibrated validation probabilities. ``seg_weight`` > 0 adds the
    training-only lesion-map head (``guidance.lesion_head``: per-cell cross-entropy against the
    masks, weighted by it); like ``cam_weight`` it needs ``masks/`` and runs the guided loop.
    ``base_weight`` and ``small_weight`` (CT phantom folders only, ``emphasis``): the loss
    weight of skull-base slices and of hemorrhage slices with a small lesion, relative to the
    others of their class. ``calibration``: "platt" or "temperature" (``calibrate``).
    ``context_blocks``: residual dilated blocks after the last conv block
    (``network.build_model``); with ``initial_model`` the new blocks start as the identity.
    ``pointing_weight``: in the guided loop, the epoch kept is the best by 3 x validation ROC AUC
    + this x the validation pointing game, among the epochs whose pointing game reaches
    ``pointing_floor`` (``guidance.epoch_score``).
    """
    import keras
    from sklearn.utils.class_weight import compute_class_weight

    from hybrid_model.data import DatasetError, load_labelled
    from hybrid_model.guidance import DEFAULT_TEMPERATURE, describe, guided_fine_tune
    from hybrid_model.io import DISCLAIMER, save_model
    from hybrid_model.metrics import classification_metrics, render_metrics
    from hybrid_model.network import DEFAULT_FILTERS, build_model

    keras.utils.set_random_seed(seed)
    started = time.time()
    # Built first: a network that cannot be built (network.RowStepsError) fails before any data
    # is read.
    model = build_model(
        (size, size, 3),
        filters=tuple(filters or DEFAULT_FILTERS),
        pooled_blocks=pooled_blocks,
        row_steps=row_steps,
        context_blocks=context_blocks,
    )
    data = load_labelled(data_dir, size, head_gate=False, framing=framing)
    if len(np.unique(data.labels)) < 2:
        raise DatasetError(f"{data_dir}: training needs both classes, found only one")
    train_idx, val_idx = split(data, val_split, seed)
    log.info("training on %d images, validating on %d", len(train_idx), len(val_idx))
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=data.labels[train_idx])
    sample_weights = emphasis(
        Path(data_dir), data.ids, data.labels, train_idx, base_weight, small_weight
    )
    guided = cam_weight > 0 or seg_weight > 0
    temperature = cam_temperature or DEFAULT_TEMPERATURE
    if guided and not data.masks:
        raise DatasetError(f"{data_dir}: training with lesion masks needs masks/ beside the images")

    if initial_model is not None:
        _warm_start(model, initial_model)
    if guided:
        masks = _load_masks(data, size)
        # The best epoch so far, for a run stopped before it ends (as the plain loop's).
        checkpoint = checkpoint_path(out_path)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        log.info(
            "lesion masks: %d; Grad-CAM guidance weight %.2f, lesion-map weight %.2f",
            len(data.masks),
            cam_weight,
            seg_weight,
        )
        guidance = guided_fine_tune(
            model,
            data.images,
            masks,
            data.labels,
            train_idx,
            val_idx,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            cam_weight=cam_weight,
            temperature=temperature,
            class_weights=(float(weights[0]), float(weights[1])),
            sample_weights=sample_weights,
            patience=patience,
            seed=seed,
            pointing_subset=pointing_subset,
            grey_share=grey_share,
            seg_weight=seg_weight,
            checkpoint=checkpoint,
            max_seconds=max_minutes * 60 if max_minutes else None,
            show=True,
            pointing_weight=pointing_weight,
            pointing_floor=pointing_floor,
        )
        checkpoint.unlink(missing_ok=True)  # the best epoch is in the model now
        epochs_run = len(guidance.history)
    else:
        epochs_run = _fit(
            model,
            data,
            (train_idx, val_idx),
            weights,
            out_path,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            learning_rate=learning_rate,
            patience=patience,
            grey_share=grey_share,
            sample_weights=sample_weights,
        )

    fitted = calibrate(model, data.floats(val_idx), data.labels[val_idx], batch_size, calibration)
    probs = model.predict(data.floats(val_idx), batch_size=batch_size, verbose=0).reshape(-1)
    metrics = classification_metrics(data.labels[val_idx], probs, specificity=target_specificity)
    metrics["calibration"] = fitted
    metrics["split"] = "validation"
    metrics["epochs_run"] = epochs_run
    metrics["train_seconds"] = round(time.time() - started, 1)
    if guided:
        metrics["gradcam_guidance"] = describe(guidance, cam_weight, temperature, seg_weight)
    render_metrics(metrics, title=f"validation ({len(val_idx)} images)")

    if phantom_trained is None:
        phantom_trained = is_phantom_folder(Path(data_dir), data.files)
    description = training_data or (
        f"{len(data.labels)} images from {Path(data_dir).name} "
        f"({int(data.labels.sum())} hemorrhage), seed {seed}, val split {val_split}"
    )
    metadata = {
        "input_size": size,
        "framing": framing,
        "training_data": description,
        "phantom_trained": bool(phantom_trained),
        "clinically_valid": False,
        "metrics": metrics,
        "threshold": metrics["threshold"],
        "calibration": fitted,
        "disclaimer": DISCLAIMER,
        "seed": seed,
    }
    if grey_share > 0:
        metadata["augmentation"] = (
            f"{grey_share:.0%} of the three-window training slices redrawn per batch as 8-bit "
            "grey exports of a random window (hybrid_model/augment.py)"
        )
    if sample_weights is not None:
        metadata["emphasis"] = (
            f"loss weight x{base_weight:g} for skull-base slices (level < {SKULL_BASE_LEVEL}) and "
            f"x{small_weight:g} for hemorrhage slices with under {SMALL_LESION_MM2:g} mm2 of "
            "lesion, relative to the others of their class (hybrid_model/train.py, emphasis)"
        )
    if guided:
        parts = []
        if cam_weight > 0:
            parts.append(
                f"a Grad-CAM pointing loss (weight {cam_weight}, temperature {temperature}) "
                "pulled the map's peak onto the lesion"
            )
        if seg_weight > 0:
            parts.append(
                f"a training-only lesion-map head on last_conv (weight {seg_weight}) learned "
                "every lesion cell"
            )
        metadata["auxiliary_supervision"] = (
            "lesion masks of the synthetic phantoms guided training: "
            + "; ".join(parts)
            + "; the served network is unchanged; phantom-trained, NOT clinically valid"
        )
    save_model(model, out_path, metadata)
    metrics_path(out_path).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


CALIBRATIONS = ("platt", "temperature")


def fold_affine(layer, scale: float, shift: float) -> None:
    """A Dense layer with one output gives a x output + c from now on (a > 0: the ranking and
    any max over its outputs are unchanged)."""
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scale, bias * scale + shift])


def calibrate(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 32,
    method: str = "platt",
    where: str = "the validation split",
) -> dict:
    """Calibrate on validation data and fold it into the network: the ``logit`` layer's weights
    and bias become a x W and a x b + c (Platt scaling, ``metrics.fit_platt``; ``method``
    "temperature": a = 1 / T, c = 0), so the saved model outputs calibrated probabilities
    everywhere it is used (worker, predict, evaluate) and Grad-CAM maps only change scale.
    Returns what was fitted (stored in the model's metadata)."""
    import keras

    from hybrid_model.metrics import expected_calibration_error, fit_platt, fit_temperature

    if method not in CALIBRATIONS:
        raise ValueError(f"method must be one of {', '.join(CALIBRATIONS)}, not {method!r}")
    layer = model.get_layer("logit")
    logits_of = keras.Model(model.inputs, layer.output)
    logits = logits_of.predict(images, batch_size=batch_size, verbose=0).reshape(-1)
    if method == "platt":
        scale, shift = fit_platt(labels, logits)
    else:
        scale, shift = 1.0 / fit_temperature(labels, logits), 0.0
    fold_affine(layer, scale, shift)
    before = expected_calibration_error(labels, 1 / (1 + np.exp(-logits)))
    after = expected_calibration_error(labels, 1 / (1 + np.exp(-(scale * logits + shift))))
    log.info("calibration (%s): logit x %.3f %+.3f, ECE %.4f -> %.4f", method, scale, shift,
             before, after)  # fmt: skip
    record = {
        "method": ("Platt scaling (logit x a + c)" if method == "platt" else "temperature scaling")
        + f" on {where}, folded into the logit layer",
        "temperature": round(1.0 / scale, 5),
        "ece_before": round(before, 5),
        "ece_after": round(after, 5),
        "validation_slices": int(len(labels)),
    }
    if method == "platt":
        record.update(scale=round(scale, 5), shift=round(shift, 5))
    return record


def _fit(
    model,
    data,
    split: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    out_path: str | Path,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    learning_rate: float,
    patience: int,
    grey_share: float = 0.0,
    sample_weights: np.ndarray | None = None,
) -> int:
    """Plain Keras training (full augmentation, class weights, early stopping on val AUC).

    Returns the number of epochs run; ``model`` ends with the best epoch's weights.
    """
    import keras

    from hybrid_model.guidance import keras_verbosity

    class_weight: dict[int, float] | None = {0: float(weights[0]), 1: float(weights[1])}
    per_image = None
    if sample_weights is not None:  # the class weights folded in: Keras takes one or the other
        per_image = sample_weights * np.where(data.labels == 1, weights[1], weights[0])
        class_weight = None
    train_ds, val_ds = _datasets(
        data.images, data.labels, *split, batch_size, seed, grey_share, per_image
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = checkpoint_path(out_path)
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
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=keras_verbosity(True),
    )
    if checkpoint.exists():
        model.load_weights(checkpoint)
        checkpoint.unlink()
    return len(history.history.get("loss", []))
