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


def test_strata_by_format_and_level(tmp_path):
    from hybrid_model.evaluate import strata
    from hybrid_model.metrics import classification_metrics, render_metrics

    rows = [  # id, format, level, label, probability
        ("d1", "dcm", 0.1, 1, 0.9), ("d2", "dcm", 0.1, 0, 0.2), ("d3", "dcm", 0.5, 1, 0.3),
        ("d4", "dcm", 0.5, 0, 0.4), ("p1", "png-u8", 0.9, 1, 0.7), ("p2", "png-u8", 0.9, 0, 0.8),
    ]  # fmt: skip
    with open(tmp_path / "slices.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "format", "level"])
        writer.writerows(r[:3] for r in rows)
    ids = [r[0] for r in rows]
    labels = np.array([r[3] for r in rows])
    probs = np.array([r[4] for r in rows])
    out = strata(tmp_path, ids, labels, probs, threshold=0.5)
    dcm = out["by_format"]["dcm"]
    assert dcm["slices"] == 4 and dcm["hemorrhage"] == 2
    assert dcm["roc_auc"] == 0.75  # pairs (0.9>0.2, 0.9>0.4, 0.3>0.2, 0.3<0.4)
    assert dcm["sensitivity"] == 0.5 and dcm["specificity"] == 1.0
    png = out["by_format"]["png-u8"]
    assert png["roc_auc"] == 0.0 and png["specificity"] == 0.0
    assert out["by_level"]["skull base (< 0.3)"]["roc_auc"] == 1.0
    assert out["by_level"]["middle (0.3-0.7)"]["sensitivity"] == 0.0
    assert set(out["by_level"]) == {"skull base (< 0.3)", "middle (0.3-0.7)", "vertex (> 0.7)"}
    render_metrics({**classification_metrics(labels, probs, 0.5), **out}, title="t")


def test_strata_need_the_phantom_tables(tmp_path):
    from hybrid_model.evaluate import strata

    assert strata(tmp_path, ["a"], np.array([1]), np.array([0.5]), 0.5) == {}


def test_sensitivity_by_lesion_area_and_false_positives_next_to_a_lesion(tmp_path):
    from hybrid_model.evaluate import strata

    rows = [  # id, instance, label, lesion pixels, flagged
        ("a1", 1, 0, 0, True), ("a2", 2, 1, 40, False), ("a3", 3, 1, 2000, True),
        ("a4", 4, 0, 0, False), ("a5", 5, 0, 0, True), ("a6", 6, 0, 0, False),
    ]  # fmt: skip
    with open(tmp_path / "slices.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "series", "instance", "hemorrhage", "lesion_pixels", "format",
                         "level"])  # fmt: skip
        writer.writerows((r[0], "a", r[1], r[2], r[3], "dcm", 0.5) for r in rows)
    with open(tmp_path / "series.csv", "w", newline="") as fh:
        fh.write("series,spacing_mm\na,0.5\n")
    labels = np.array([r[2] for r in rows])
    probs = np.array([0.9 if r[4] else 0.1 for r in rows])
    out = strata(tmp_path, [r[0] for r in rows], labels, probs, threshold=0.5)
    # 40 px x 0.25 mm2 = 10 mm2; 2000 px = 500 mm2
    assert out["by_lesion_area"] == {
        "0-25 mm2": {"slices": 1, "detected": 0, "rate": 0.0},
        ">= 400 mm2": {"slices": 1, "detected": 1, "rate": 1.0},
    }
    near = out["normal_by_neighbour"]
    assert near["next to a hemorrhage slice"] == {"slices": 2, "flagged": 1, "rate": 0.5}
    assert near["other normal slices"] == {"slices": 2, "flagged": 1, "rate": 0.5}
