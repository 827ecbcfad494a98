"""Choose a model's threshold again on labelled validation data (``hemoscan threshold``).

The weights are not touched (the model's version, a hash of its weights, stays the same, and
so does a series stage tied to it); only the stored threshold changes, to the lowest one that
meets the target specificity on DATA, and the metadata records where it came from. Use it when
decoding or the data a site screens changes what the scores look like (on 2026-12-03 the demo
weights' threshold was chosen again after grey exports began to be read as pseudo-HU:
docs/experiments.md, "Grey exports"). DATA must be labelled and must not be the data the model
will then be judged on.

``recalibrate`` first fits Platt scaling on DATA (``train.calibrate``) and folds it into the
logit layer: the weights change, so the version does, and a series stage tied to the old version
falls back to max-of-slices until it is trained again.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any


def rethreshold(
    data_dir: str | Path,
    model_path: str | Path,
    out_path: str | Path,
    *,
    specificity: float = 0.95,
    batch_size: int = 32,
    show: bool = True,
    recalibrate: bool = False,
) -> dict[str, Any]:
    """Score DATA (calibrated on it first with ``recalibrate``), pick the threshold meeting
    ``specificity`` there, write the model to ``out_path`` with that threshold; return the
    record stored as ``operating_point``."""
    from hybrid_model.data import load_labelled
    from hybrid_model.io import load_model, save_model
    from hybrid_model.metrics import classification_metrics, render_metrics

    loaded = load_model(model_path)
    data = load_labelled(data_dir, loaded.input_size, framing=loaded.framing)
    if len(set(data.labels.tolist())) < 2:
        from hybrid_model.data import DatasetError

        raise DatasetError(f"{data_dir}: both classes are needed to choose a threshold")
    meta = dict(loaded.metadata)
    calibration = None
    if recalibrate:
        from hybrid_model.train import calibrate

        where = f"{Path(data_dir).name} (hemoscan threshold --recalibrate)"
        calibration = calibrate(loaded.model, data.floats(), data.labels, batch_size, where=where)
        calibration["data"] = Path(data_dir).name
        calibration["date"] = _dt.date.today().isoformat()
        meta["calibration_before"] = meta.get("calibration")
        meta["calibration"] = calibration
    probs = loaded.model.predict(data.floats(), batch_size=batch_size, verbose=0).reshape(-1)
    metrics = classification_metrics(data.labels, probs, specificity=specificity)
    if calibration is not None:
        metrics["calibration"] = calibration
    record = {
        "data": Path(data_dir).name,
        "slices": len(probs),
        "hemorrhage": int(data.labels.sum()),
        "target_specificity": specificity,
        "threshold_before": loaded.threshold,
        "threshold": float(metrics["threshold"]),
        "sensitivity": float(metrics["sensitivity"]),
        "specificity": float(metrics["specificity"]),
        "roc_auc": float(metrics["roc_auc"]),
        "date": _dt.date.today().isoformat(),
        "recalibrated": recalibrate,
    }
    meta["threshold"] = record["threshold"]
    meta["operating_point"] = record
    save_model(loaded.model, out_path, meta)
    if show:
        render_metrics(metrics, title=f"{Path(data_dir).name} ({len(probs)} images)")
        print(
            f"threshold {record['threshold_before']:.4f} -> {record['threshold']:.4f} "
            f"({specificity:.0%} specificity on {record['data']}); wrote {out_path}"
        )
    return record


__all__ = ["rethreshold"]
