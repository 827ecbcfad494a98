"""evaluate's breakdown by hemorrhage kind and by mimic, from the CT phantoms' tables."""

from __future__ import annotations

import csv

import numpy as np

from hybrid_model.evaluate import breakdown


def _tables(root, slices, series):
    with open(root / "slices.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "series", "kinds"])
        writer.writerows(slices)
    with open(root / "series.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["series", "mimics"])
        writer.writerows(series)


def test_sensitivity_by_kind_and_false_positives_by_mimic(tmp_path):
    _tables(
        tmp_path,
        [
            ("a1", "a", "subdural"),
            ("a2", "a", "subdural;epidural"),
            ("a3", "a", ""),
            ("b1", "b", ""),
            ("b2", "b", ""),
        ],
        [("a", "pineal"), ("b", "pineal;dense_sinus")],
    )
    ids = ["a1", "a2", "a3", "b1", "b2"]
    labels = np.array([1, 1, 0, 0, 0])
    flagged = np.array([True, False, True, False, True])
    out = breakdown(tmp_path, ids, labels, flagged)
    assert out["by_kind"]["subdural"] == {"slices": 2, "detected": 1, "rate": 0.5}
    assert out["by_kind"]["epidural"] == {"slices": 1, "detected": 0, "rate": 0.0}
    assert out["mimics"]["pineal"] == {"slices": 3, "flagged": 2, "rate": 2 / 3}
    assert out["mimics"]["dense_sinus"] == {"slices": 2, "flagged": 1, "rate": 0.5}
    assert out["mimics"]["all normal slices"]["slices"] == 3


def test_no_tables_no_breakdown(tmp_path):
    assert breakdown(tmp_path, ["x"], np.array([1]), np.array([True])) == {}
