"""Calibration: expected calibration error and temperature scaling (pure numpy, no model)."""

from __future__ import annotations

import numpy as np

from hybrid_model.metrics import classification_metrics, expected_calibration_error, fit_temperature


def _draw(rng: np.random.Generator, n: int, temperature: float):
    """Labels drawn from sigmoid(z / temperature): the logits z are over-confident by T."""
    z = rng.normal(0, 4, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z / temperature))).astype(int)
    return y, z


def test_ece_is_small_for_calibrated_and_large_for_overconfident_probabilities():
    rng = np.random.default_rng(0)
    y, z = _draw(rng, 20000, 3.0)
    calibrated = expected_calibration_error(y, 1 / (1 + np.exp(-z / 3.0)))
    overconfident = expected_calibration_error(y, 1 / (1 + np.exp(-z)))
    assert calibrated < 0.02
    assert overconfident > 0.08


def test_fit_temperature_recovers_the_temperature_and_keeps_the_ranking():
    rng = np.random.default_rng(1)
    y, z = _draw(rng, 20000, 3.0)
    t = fit_temperature(y, z)
    assert 2.7 < t < 3.3
    before = classification_metrics(y, 1 / (1 + np.exp(-z)))
    after = classification_metrics(y, 1 / (1 + np.exp(-z / t)))
    assert abs(before["roc_auc"] - after["roc_auc"]) < 1e-9  # one parameter: same ranking
    assert after["ece"] < before["ece"]


def test_ece_edges_empty_and_perfect():
    assert np.isnan(expected_calibration_error(np.array([]), np.array([])))
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_fit_platt_recovers_a_scale_and_a_shift_that_temperature_cannot():
    """Logits over-confident by 2 and shifted by +1.5 (as balanced class weights shift them):
    Platt scaling finds both, keeps the ranking, and ends below temperature scaling's ECE."""
    from hybrid_model.metrics import fit_platt

    rng = np.random.default_rng(2)
    truth = rng.normal(-1.0, 3.0, 20000)  # the calibrated logit
    y = (rng.random(truth.size) < 1 / (1 + np.exp(-truth))).astype(int)
    z = 2.0 * truth + 1.5
    a, b = fit_platt(y, z)
    assert 0.45 < a < 0.55 and -0.85 < b < -0.65  # truth = 0.5 z - 0.75
    platt = 1 / (1 + np.exp(-(a * z + b)))
    temperature = 1 / (1 + np.exp(-z / fit_temperature(y, z)))
    assert (
        abs(classification_metrics(y, platt)["roc_auc"] - classification_metrics(y, z)["roc_auc"])
        < 1e-9
    )
    assert expected_calibration_error(y, platt) < 0.02
    assert expected_calibration_error(y, temperature) > 2 * expected_calibration_error(y, platt)
