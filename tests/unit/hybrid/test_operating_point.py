"""``hemoscan threshold``: the threshold chosen again on labelled data, the weights untouched."""

from __future__ import annotations

import numpy as np

from hybrid_model.data import load_labelled
from hybrid_model.io import load_model
from hybrid_model.operating_point import rethreshold
from hybrid_model.phantoms import generate


def _scores(model_path, data_dir):
    loaded = load_model(model_path)
    data = load_labelled(data_dir, loaded.input_size)
    return loaded, data.labels, loaded.model.predict(data.floats(), verbose=0).reshape(-1)


def test_the_lowest_threshold_meeting_the_specificity_is_stored(tmp_path, tiny_model_path):
    data = tmp_path / "val"
    generate(data, 40, seed=5, fmt="png", size=32)
    out = tmp_path / "again.keras"
    record = rethreshold(data, tiny_model_path, out, specificity=0.8, show=False)

    before, labels, probs = _scores(tiny_model_path, data)
    after = load_model(out)
    assert after.metadata["version"] == before.metadata["version"]  # same weights
    assert after.threshold == record["threshold"]
    assert after.metadata["operating_point"]["threshold_before"] == before.threshold
    negatives = probs[labels == 0]
    assert (negatives < after.threshold).mean() >= 0.8
    # any lower threshold (down to the next negative score below it) misses the target
    lower = negatives[negatives < after.threshold]
    if len(lower):
        assert (negatives < lower.max()).mean() < 0.8
    _, _, again = _scores(out, data)
    np.testing.assert_allclose(again, probs, atol=1e-6)  # the scores did not move


def test_recalibrate_folds_platt_scaling_into_the_weights_first(tmp_path, tiny_model_path):
    """``--recalibrate``: the logit layer takes a x W and a x b + c fitted on DATA (so the
    version changes), the scores move as sigmoid(a x logit + c), and the threshold is chosen on
    the recalibrated scores."""
    data = tmp_path / "val"
    generate(data, 40, seed=5, fmt="png", size=32)
    out = tmp_path / "again.keras"
    record = rethreshold(data, tiny_model_path, out, specificity=0.8, show=False, recalibrate=True)
    before, labels, probs = _scores(tiny_model_path, data)
    after, _, again = _scores(out, data)
    cal = after.metadata["calibration"]
    assert record["recalibrated"] and cal["data"] == "val" and "Platt" in cal["method"]
    assert after.metadata["version"] != before.metadata["version"]
    logits = np.log(probs) - np.log1p(-probs)
    expected = 1 / (1 + np.exp(-(cal["scale"] * logits + cal["shift"])))
    np.testing.assert_allclose(again, expected, atol=1e-3)  # scale and shift are rounded
    negatives = again[labels == 0]
    assert (negatives < after.threshold).mean() >= 0.8
