"""The series stage: a bidirectional GRU over the slices of a series in z order.

Every slice is first scored alone by the slice network (``network.build_model``); its
evidence vector (``row_max``, the GRU's strongest band response) and its logit, with the
spacing to the previous slice, form one step of the series' sequence. A bidirectional GRU reads
the sequence and gives every slice a context-refined logit; the series logit is the largest of
them (a series shows a bleed when one of its slices does). Max-of-slices of the slice network
alone is the baseline it must beat (``evaluate_series`` prints both).

The stage is trained on slices the slice network never saw (a fresh phantom set): on its own
training slices the slice network is over-confident, and a series stage trained there would
learn to trust it too much. Its weights are a plain Keras model (Masking, GRU, Dense); the
masked max is taken outside it, so it loads without custom objects.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_model.gradcam import EMBED_LAYER  # the slice network's evidence vector

log = logging.getLogger(__name__)

REFERENCE_SPACING_MM = 5.0
EXTRA_FEATURES = 3  # slice logit, spacing to the previous slice / 5 mm, 1 (marks a real step)
# Series with fewer slices get max of slices at the slice threshold, not the stage: trained on
# whole series (22 to 73 slices), its threshold flags no one-slice series and half of the
# 8-slice windows of the held-out series, where max of slices finds 0.73 and 0.91 of them
# (docs/experiments.md, "Short series", session 19).
MIN_STAGE_SLICES = 13


@dataclass
class SeriesSet:
    """Slices grouped into series in z order, padded to the longest series."""

    names: list[str]  # series folder / pseudonym, never a UID
    features: np.ndarray  # S x T x F float32, zeros after a series' last slice
    mask: np.ndarray  # S x T bool
    slice_labels: np.ndarray  # S x T int (0 where padded)
    slice_logits: np.ndarray  # S x T float32: the slice network's own logits
    slice_ids: list[list[str]]

    @property
    def series_labels(self) -> np.ndarray:
        return (self.slice_labels.max(axis=1) > 0).astype(np.int64)


def slice_outputs(model, images_u8: np.ndarray, batch_size: int = 32):
    """(logits N, evidence vectors N x D) of the slice network on uint8 images."""
    import keras

    view = keras.Model(
        model.inputs, [model.get_layer("logit").output, model.get_layer(EMBED_LAYER).output]
    )
    logits, embeddings = [], []
    for start in range(0, len(images_u8), batch_size):
        x = images_u8[start : start + batch_size].astype(np.float32) / 255.0
        logit, emb = view(x, training=False)
        logits.append(np.asarray(logit).reshape(-1))
        embeddings.append(np.asarray(emb))
    return np.concatenate(logits), np.concatenate(embeddings)


def series_order(
    root: Path, ids: list[str], files: list[Path]
) -> dict[str, list[tuple[float, int]]]:
    """Series name -> [(z, index into ``ids``)] in z order: from the phantoms' ``slices.csv``
    (series, z_mm), else from each DICOM header (SeriesInstanceUID, position along the normal,
    InstanceNumber as the fallback). Slices with neither are left out."""
    groups: dict[str, list[tuple[float, int]]] = {}
    table = root / "slices.csv"
    if table.is_file():
        with open(table, newline="") as fh:
            rows = {r["id"]: r for r in csv.DictReader(fh)}
        for i, sid in enumerate(ids):
            if sid in rows:
                groups.setdefault(rows[sid]["series"], []).append((float(rows[sid]["z_mm"]), i))
    else:
        import pydicom

        from hybrid_model.dicom import series_identity
        from hybrid_model.layouts import digest

        for i, path in enumerate(files):
            try:
                ident = series_identity(pydicom.dcmread(path, stop_before_pixels=True))
            except Exception:  # not DICOM or unreadable: not part of a series
                continue
            z = ident.z_mm if ident.z_mm is not None else ident.instance
            if ident.series_uid and z is not None:
                groups.setdefault(digest("series", ident.series_uid), []).append((float(z), i))
    return {name: sorted(members) for name, members in sorted(groups.items())}


def sequence_features(embeddings: np.ndarray, logits: np.ndarray, z: np.ndarray) -> np.ndarray:
    """T x F steps of one series in z order: evidence vector, logit, spacing to the previous
    slice / 5 mm (NaN z, e.g. a folder of PNGs: 5 mm is assumed), 1."""
    z = np.asarray(z, np.float64)
    gaps = np.abs(np.diff(z, prepend=z[0] - REFERENCE_SPACING_MM)) / REFERENCE_SPACING_MM
    gaps = np.where(np.isfinite(gaps), gaps, 1.0)
    out = np.zeros((len(logits), embeddings.shape[1] + EXTRA_FEATURES), np.float32)
    out[:, : embeddings.shape[1]] = embeddings
    out[:, -3] = logits
    out[:, -2] = np.clip(gaps, 0.0, 4.0)
    out[:, -1] = 1.0
    return out


@dataclass(frozen=True)
class SeriesVerdict:
    """A series' verdict: its probability, its slices' context-refined probabilities (in the
    order given), the baseline (the largest slice probability alone), how it was made and the
    threshold its probability and slice probabilities are read against."""

    probability: float
    slice_probabilities: np.ndarray
    max_slice_probability: float
    method: str  # "series_stage" | "max_of_slices"
    threshold: float


class SeriesStage:
    """The trained series stage at inference: slices of one series in z order -> verdict.

    ``stage`` None (no series model, or one trained on another slice network's outputs)
    gives max-of-slices, labelled so in ``method``. With a stage, ``threshold`` is the stage's
    and a series of fewer than ``min_slices`` slices gets max of slices at ``slice_threshold``
    (its verdict says so: ``SeriesVerdict.method`` and ``threshold``)."""

    def __init__(
        self,
        stage: Any | None,
        threshold: float,
        version: str | None = None,
        *,
        slice_threshold: float | None = None,
        min_slices: int = MIN_STAGE_SLICES,
    ):
        if stage is not None and min_slices > 1 and slice_threshold is None:
            raise ValueError("a series stage needs the slice threshold for its short series")
        self.stage = stage
        self.threshold = float(threshold)
        self.slice_threshold = float(threshold if slice_threshold is None else slice_threshold)
        self.min_slices = int(min_slices)
        self.version = version
        self._compiled: Any | None = None

    def _refine(self, batch: np.ndarray) -> np.ndarray:
        """The stage on a padded (series, steps, features) batch, as ONE compiled call.

        Called eagerly, Keras runs the GRU's recurrence as a Python loop of op dispatches, one
        per step (about 5 ms per step on a 2-core CPU: a 400-slice folder took 2 s per batch).
        Compiled once for any number of series and steps (both dimensions left open), the loop
        runs inside TensorFlow."""
        import tensorflow as tf

        if self._compiled is None:
            spec = tf.TensorSpec((None, None, batch.shape[2]), tf.float32)
            stage = self.stage
            assert stage is not None  # max-of-slices never calls the stage
            self._compiled = tf.function(
                lambda x: stage(x, training=False), input_signature=[spec], reduce_retracing=True
            )
        return np.asarray(self._compiled(tf.constant(batch)))

    @property
    def method(self) -> str:
        return "series_stage" if self.stage is not None else "max_of_slices"

    def __call__(
        self, series: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> list[SeriesVerdict]:
        """One verdict per series of (embeddings T x D, logits T, z T) in z order (T >= 1),
        from one padded call of the stage (padded steps are all zeros: masked)."""
        logits = [np.asarray(lg, np.float64) for _, lg, _ in series]
        slices = [sigmoid(lg) for lg in logits]
        baselines = [float(p.max()) if len(p) else 0.0 for p in slices]
        out = [
            SeriesVerdict(b, p, b, "max_of_slices", self.slice_threshold)
            for b, p in zip(baselines, slices, strict=True)
        ]
        if self.stage is None:
            return out
        staged = [i for i, lg in enumerate(logits) if len(lg) >= self.min_slices]
        if not staged:
            return out
        steps = [
            sequence_features(np.asarray(series[i][0], np.float32), logits[i], series[i][2])
            for i in staged
        ]
        batch = np.zeros((len(steps), max(map(len, steps)), steps[0].shape[1]), np.float32)
        for row, f in enumerate(steps):
            batch[row, : len(f)] = f
        refined = self._refine(batch)[..., 0].astype(np.float64)
        for row, (i, f) in enumerate(zip(staged, steps, strict=True)):
            probs = sigmoid(refined[row, : len(f)])
            top = float(probs.max())
            out[i] = SeriesVerdict(top, probs, baselines[i], "series_stage", self.threshold)
        return out


def load_stage(path: str | Path | None, slice_metadata: dict[str, Any], slice_threshold: float):
    """The series stage at ``path`` for the slice network of ``slice_metadata``; max-of-slices
    (at the slice threshold) when ``path`` is None or missing, or its stage was trained on
    another slice network's outputs (a warning says so)."""
    if path is None or not Path(path).is_file():
        return SeriesStage(None, slice_threshold)
    from hybrid_model.io import load_model
    from hybrid_model.metadata import read_metadata

    meta = read_metadata(Path(path))  # checked before TensorFlow loads anything
    if meta.get("kind") != "series_stage":
        log.warning("%s is not a series-stage model: series verdicts are max-of-slices", path)
        return SeriesStage(None, slice_threshold)
    if meta.get("slice_model_version") != slice_metadata.get("version"):
        log.warning(
            "the series stage %s was trained on the outputs of slice network %s, not %s: "
            "series verdicts are max-of-slices",
            Path(path).name,
            meta.get("slice_model_version"),
            slice_metadata.get("version"),
        )
        return SeriesStage(None, slice_threshold)
    return SeriesStage(
        load_model(path).model,
        float(meta["threshold"]),
        meta.get("version"),
        slice_threshold=slice_threshold,
    )


def build_series_set(
    order: dict[str, list[tuple[float, int]]],
    ids: list[str],
    labels: np.ndarray,
    logits: np.ndarray,
    embeddings: np.ndarray,
) -> SeriesSet:
    names = list(order)
    longest = max(len(m) for m in order.values())
    dim = embeddings.shape[1] + EXTRA_FEATURES
    feats = np.zeros((len(names), longest, dim), np.float32)
    mask = np.zeros((len(names), longest), bool)
    slice_labels = np.zeros((len(names), longest), np.int64)
    slice_logits = np.zeros((len(names), longest), np.float32)
    slice_ids = []
    for s, name in enumerate(names):
        members = order[name]
        z = np.array([m[0] for m in members])
        idx = np.array([m[1] for m in members])
        n = len(idx)
        feats[s, :n] = sequence_features(embeddings[idx], logits[idx], z)
        mask[s, :n] = True
        slice_labels[s, :n] = labels[idx]
        slice_logits[s, :n] = logits[idx]
        slice_ids.append([ids[i] for i in idx])
    return SeriesSet(names, feats, mask, slice_labels, slice_logits, slice_ids)


def build_series_model(feature_dim: int, units: int = 32, dropout: float = 0.2):
    """Masking -> bidirectional GRU (every step) -> Dense(1): a refined logit per slice."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None, feature_dim), name="slices")
    x = layers.Masking(mask_value=0.0, name="padding")(inputs)
    x = layers.Dropout(dropout, name="feature_dropout")(x)
    x = layers.Bidirectional(layers.GRU(units, return_sequences=True), name="bigru")(x)
    x = layers.Dense(units, activation="relu", name="step_dense")(x)
    logits = layers.Dense(1, name="slice_logit")(x)
    return keras.Model(inputs, logits, name="series_stage")


def masked_max(values, mask):
    """Max over steps of S x T ``values`` where ``mask`` (a very low value elsewhere)."""
    import tensorflow as tf

    return tf.reduce_max(tf.where(mask, values, tf.fill(tf.shape(values), -1e9)), axis=1)


def refined_logits(model, data: SeriesSet, batch_size: int = 32) -> np.ndarray:
    """S x T context-refined slice logits (0 where padded)."""
    out = np.zeros(data.mask.shape, np.float32)
    for start in range(0, len(data.names), batch_size):
        part = slice(start, start + batch_size)
        pred = np.asarray(model(data.features[part], training=False))[..., 0]
        out[part] = np.where(data.mask[part], pred, 0.0)
    return out


def series_logits(slice_logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, slice_logits, -np.inf).max(axis=1)


def sigmoid(x: Any) -> Any:
    """The probability of a logit (array or scalar) as every series verdict computes it (the
    logit clipped to +-60)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def first_logit(probability: float) -> float:
    """The smallest float x with ``sigmoid(x) >= probability`` (-inf when every logit
    qualifies, +inf when none does): ``logit >= first_logit(t)`` is exactly
    ``sigmoid(logit) >= t``, so a database can select what the sigmoid would."""
    p = float(probability)
    if float(sigmoid(np.float64(-61.0))) >= p:
        return -math.inf
    if float(sigmoid(np.float64(61.0))) < p:
        return math.inf
    lo, hi = -61.0, 61.0  # sigmoid(lo) < p <= sigmoid(hi); sigmoid never decreases
    while np.nextafter(lo, hi) < hi:
        mid = lo / 2 + hi / 2
        mid = mid if lo < mid < hi else float(np.nextafter(lo, hi))
        if float(sigmoid(np.float64(mid))) >= p:
            hi = mid
        else:
            lo = mid
    return hi


def fit_series_model(
    train: SeriesSet,
    val: SeriesSet,
    *,
    epochs: int = 60,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    patience: int = 10,
    seed: int = 0,
    slice_weight: float = 0.5,
    show: bool = True,
):
    """Train the series stage (series BCE on the masked max + ``slice_weight`` x slice BCE);
    keep the epoch with the best validation series ROC AUC (ties: lower loss)."""
    import keras
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    keras.utils.set_random_seed(seed)
    model = build_series_model(train.features.shape[-1])
    optimizer = keras.optimizers.Adam(learning_rate, clipnorm=1.0)
    pos = max(train.series_labels.mean(), 1e-3)
    series_w = tf.constant([0.5 / (1 - pos), 0.5 / pos], tf.float32)

    @tf.function(reduce_retracing=True)
    def step(x, mask, y_slice, y_series):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)[..., 0]
            per_slice = tf.nn.sigmoid_cross_entropy_with_logits(y_slice, logits)
            maskf = tf.cast(mask, tf.float32)
            slice_loss = tf.reduce_sum(per_slice * maskf) / tf.reduce_sum(maskf)
            top = masked_max(logits, mask)
            w = tf.gather(series_w, tf.cast(y_series, tf.int32))
            series_loss = tf.reduce_mean(w * tf.nn.sigmoid_cross_entropy_with_logits(y_series, top))
            loss = series_loss + slice_weight * slice_loss
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    best, best_weights, stale, history = (-1.0, 0.0), model.get_weights(), 0, []
    for epoch in range(1, epochs + 1):
        started = time.time()
        order = rng.permutation(len(train.names))
        losses = []
        for start in range(0, len(order), batch_size):
            b = np.sort(order[start : start + batch_size])
            losses.append(float(step(
                train.features[b], train.mask[b],
                train.slice_labels[b].astype(np.float32),
                train.series_labels[b].astype(np.float32),
            )))  # fmt: skip
        refined = refined_logits(model, val)
        auc = float(roc_auc_score(val.series_labels, series_logits(refined, val.mask)))
        slice_auc = float(roc_auc_score(val.slice_labels[val.mask], refined[val.mask]))
        record = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5),
                  "val_series_auc": round(auc, 5), "val_slice_auc": round(slice_auc, 5),
                  "seconds": round(time.time() - started, 2)}  # fmt: skip
        history.append(record)
        if show and (epoch == 1 or epoch % 5 == 0):
            print(f"series stage epoch {epoch}: val series AUC {auc:.4f}, slice AUC "
                  f"{slice_auc:.4f}, loss {record['loss']:.4f}")  # fmt: skip
        score = (auc, slice_auc)
        if score > best:
            best, best_weights, stale = score, model.get_weights(), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.set_weights(best_weights)
    return model, history


def compare(
    model,
    data: SeriesSet,
    threshold: float,
    slice_threshold: float | None = None,
    min_slices: int = MIN_STAGE_SLICES,
) -> dict[str, Any]:
    """Series and slice ROC AUC of max-of-slices (the slice network alone) and of the series
    stage, side by side; sensitivity/specificity of the series verdicts at ``threshold`` (a
    series probability). With ``slice_threshold``, as the pipeline gives them (``SeriesStage``):
    a series of fewer than ``min_slices`` slices has its max of slices, read against
    ``slice_threshold`` (how many: ``short_series``)."""
    from sklearn.metrics import roc_auc_score

    from hybrid_model.evaluate import stratum

    out: dict[str, Any] = {"series": len(data.names),
                           "series_with_hemorrhage": int(data.series_labels.sum()),
                           "slices": int(data.mask.sum())}  # fmt: skip
    short = np.zeros(len(data.names), bool)
    if slice_threshold is not None:
        short = data.mask.sum(axis=1) < min_slices
        out["short_series"] = int(short.sum())
    # Each series' verdict threshold: the stage's, or the slice threshold for a short series.
    cuts = np.where(short, slice_threshold or 0.0, threshold)
    top_slices = sigmoid(series_logits(data.slice_logits, data.mask))
    for name, logits in (("max of slices", data.slice_logits),
                         ("series stage", refined_logits(model, data))):  # fmt: skip
        probs = sigmoid(series_logits(logits, data.mask))
        if name == "series stage":
            probs = np.where(short, top_slices, probs)
        series = stratum(data.series_labels, probs, cuts)
        out[name] = {
            "series_roc_auc": series["roc_auc"],
            "slice_roc_auc": float(roc_auc_score(data.slice_labels[data.mask], logits[data.mask])),
        }
        if name == "series stage":
            out[name].update(sensitivity=series["sensitivity"], specificity=series["specificity"])
    return out


def split_series(n: int, val_split: float, seed: int, labels: np.ndarray):
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    return train_test_split(idx, test_size=val_split, random_state=seed, stratify=labels)


def subset(data: SeriesSet, idx: np.ndarray) -> SeriesSet:
    return SeriesSet(
        [data.names[i] for i in idx],
        data.features[idx],
        data.mask[idx],
        data.slice_labels[idx],
        data.slice_logits[idx],
        [data.slice_ids[i] for i in idx],
    )


def load_series_set(
    data_dir: str | Path, slice_model, batch_size: int = 32, framing: str = "letterbox"
) -> SeriesSet:
    """Decode a labelled folder (every slice, no out-of-scope gate: a series is read whole),
    framed as the slice network sees it (its metadata's ``framing``), and build its series from
    the slice network's outputs."""
    from hybrid_model.data import DatasetError, load_labelled

    root = Path(data_dir)
    size = int(slice_model.input_shape[1])
    data = load_labelled(root, size, head_gate=False, framing=framing)
    order = series_order(root, data.ids, data.files)
    if not order:
        raise DatasetError(f"{root}: no series found (slices.csv, or DICOM series headers)")
    logits, embeddings = slice_outputs(slice_model, data.images, batch_size)
    return build_series_set(order, data.ids, data.labels, logits, embeddings)


def _calibrate(model, val: SeriesSet) -> dict[str, Any]:
    """Platt scaling of the series logits on the validation series (sigmoid(a x logit + c),
    ``metrics.fit_platt``), folded into the ``slice_logit`` layer: the max over slices commutes
    with a positive scale and a shift. The series loss weighs the classes equally, which shifts
    the probabilities as class weights do; a temperature alone cannot undo that."""
    from hybrid_model.metrics import expected_calibration_error, fit_platt
    from hybrid_model.train import fold_affine

    top = series_logits(refined_logits(model, val), val.mask)
    scale, shift = fit_platt(val.series_labels, top)
    fold_affine(model.get_layer("slice_logit"), scale, shift)
    return {
        "method": "Platt scaling (logit x a + c) of the series logits on the validation series",
        "scale": round(scale, 5),
        "shift": round(shift, 5),
        "temperature": round(1.0 / scale, 5),
        "ece_before": round(expected_calibration_error(val.series_labels, sigmoid(top)), 5),
        "ece_after": round(
            expected_calibration_error(val.series_labels, sigmoid(scale * top + shift)), 5
        ),
        "validation_series": len(val.names),
    }


def train_series(
    data_dir: str | Path,
    out_path: str | Path,
    slice_model_path: str | Path | None = None,
    *,
    epochs: int = 60,
    val_split: float = 0.2,
    seed: int = 0,
    show: bool = True,
) -> dict[str, Any]:
    """Train the series stage on a folder of series the slice network never saw; save it
    with its metadata (phantom-trained when the folder is); return the validation figures."""
    from hybrid_model.io import DEMO_MODEL_PATH, DISCLAIMER, load_model, save_model
    from hybrid_model.metrics import threshold_at_specificity
    from hybrid_model.train import is_phantom_folder

    started = time.time()
    loaded = load_model(slice_model_path or DEMO_MODEL_PATH)
    data = load_series_set(data_dir, loaded.model, framing=loaded.framing)
    labels = data.series_labels
    train_idx, val_idx = split_series(len(labels), val_split, seed, labels)
    train, val = subset(data, train_idx), subset(data, val_idx)
    log.info("series stage: %d training series, %d validation", len(train_idx), len(val_idx))
    model, history = fit_series_model(train, val, epochs=epochs, seed=seed, show=show)
    calibration = _calibrate(model, val)
    top = sigmoid(series_logits(refined_logits(model, val), val.mask))
    threshold, _, _ = threshold_at_specificity(val.series_labels, top)
    figures = compare(model, val, threshold, loaded.threshold)
    phantom = is_phantom_folder(Path(data_dir), [])  # its PHANTOMS.txt or slices.csv
    metadata = {
        "kind": "series_stage",
        "slice_model_version": loaded.metadata.get("version"),
        "feature_dim": int(data.features.shape[-1]),
        "training_data": f"{len(labels)} series ({int(labels.sum())} with hemorrhage) from "
        f"{Path(data_dir).name}, seed {seed}, val split {val_split}",
        "phantom_trained": bool(phantom),
        "clinically_valid": False,
        "threshold": float(threshold),
        "calibration": calibration,
        "metrics": {
            "validation": figures,
            "history": history,
            "train_seconds": round(time.time() - started, 1),
        },  # fmt: skip
        "disclaimer": DISCLAIMER,
        "seed": seed,
    }
    save_model(model, out_path, metadata)
    if show:
        print_comparison(figures, f"validation ({len(val_idx)} series)")
    return metadata


def evaluate_series(
    data_dir: str | Path,
    series_model_path: str | Path,
    slice_model_path: str | Path | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """Max-of-slices and the series stage side by side on a labelled folder of series."""
    from hybrid_model.io import DEMO_MODEL_PATH, load_model

    loaded = load_model(slice_model_path or DEMO_MODEL_PATH)
    stage = load_model(series_model_path)
    if stage.metadata.get("kind") != "series_stage":
        from hybrid_model.metadata import ModelLoadError

        raise ModelLoadError(f"{series_model_path} is not a series-stage model")
    if stage.metadata.get("slice_model_version") != loaded.metadata.get("version"):
        log.warning("the series stage was trained on another slice network's outputs")
    data = load_series_set(data_dir, loaded.model, framing=loaded.framing)
    figures = compare(stage.model, data, float(stage.metadata["threshold"]), loaded.threshold)
    if show:
        print_comparison(figures, f"{Path(data_dir).name} ({len(data.names)} series)")
        print(loaded.note)
    return figures


def print_comparison(figures: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"series screening: {title}, {figures['series_with_hemorrhage']} "
                  f"with hemorrhage, {figures['slices']} slices")  # fmt: skip
    for col in ("", "series ROC AUC", "slice ROC AUC", "sensitivity", "specificity"):
        table.add_column(col, justify="right")

    def cell(v):
        return "-" if v is None else f"{v:.4f}"

    for name in ("max of slices", "series stage"):
        if name in figures:
            row = figures[name]
            table.add_row(name, cell(row["series_roc_auc"]), cell(row["slice_roc_auc"]),
                          cell(row.get("sensitivity")), cell(row.get("specificity")))  # fmt: skip
    if figures.get("short_series"):
        table.caption = (
            f"{figures['short_series']} series of fewer than {MIN_STAGE_SLICES} slices: their "
            "verdict is max of slices at the slice threshold, as in a scan"
        )
    Console().print(table)


__all__ = [
    "evaluate_series",
    "train_series",
    "SeriesSet",
    "build_series_model",
    "build_series_set",
    "compare",
    "fit_series_model",
    "load_series_set",
    "refined_logits",
    "series_logits",
    "series_order",
    "slice_outputs",
]
