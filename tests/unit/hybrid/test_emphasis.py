"""train.emphasis: more loss weight on skull-base slices and small lesions, class balance kept."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_model.data import DatasetError
from hybrid_model.train import emphasis


def _tables(root, rows):  # rows: (id, level, hemorrhage, lesion pixels); spacing 0.5 mm
    with open(root / "slices.csv", "w") as fh:
        fh.write("id,series,level,hemorrhage,lesion_pixels\n")
        fh.writelines(f"{i},a,{lv},{h},{px}\n" for i, lv, h, px in rows)
    (root / "series.csv").write_text("series,spacing_mm\na,0.5\n")


ROWS = [  # 100 mm2 = 400 px at 0.5 mm
    ("base_n", 0.1, 0, 0), ("mid_n", 0.5, 0, 0), ("top_n", 0.9, 0, 0),
    ("base_small", 0.2, 1, 100), ("mid_small", 0.5, 1, 399), ("mid_big", 0.5, 1, 400),
]  # fmt: skip
LABELS = np.array([r[2] for r in ROWS])
IDS = [r[0] for r in ROWS]
ALL = np.arange(len(ROWS))


def test_skull_base_and_small_lesions_weigh_more_within_their_class(tmp_path):
    _tables(tmp_path, ROWS)
    w = dict(zip(IDS, emphasis(tmp_path, IDS, LABELS, ALL, base_weight=3, small_weight=2),
                 strict=True))  # fmt: skip
    assert w["base_n"] == pytest.approx(3 * w["mid_n"]) and w["mid_n"] == w["top_n"]
    assert w["mid_small"] == pytest.approx(2 * w["mid_big"])
    assert w["base_small"] == pytest.approx(6 * w["mid_big"])  # both: 3 x 2
    for cls in (0, 1):  # each class still sums to its count: the class weights keep the balance
        assert np.mean([w[i] for i, lab in zip(IDS, LABELS, strict=True) if lab == cls]) == (
            pytest.approx(1.0)
        )


def test_the_means_are_taken_over_the_training_split(tmp_path):
    _tables(tmp_path, ROWS)
    train_idx = np.array([1, 2, 5])  # no skull-base slice, no small lesion in training
    w = emphasis(tmp_path, IDS, LABELS, train_idx, base_weight=3, small_weight=2)
    assert w[train_idx] == pytest.approx([1.0, 1.0, 1.0])
    assert w[0] == pytest.approx(3.0)


def test_off_by_default_and_only_on_phantom_tables(tmp_path):
    assert emphasis(tmp_path, IDS, LABELS, ALL) is None  # no tables needed when off
    with pytest.raises(DatasetError, match="CT phantom folder"):
        emphasis(tmp_path, IDS, LABELS, ALL, base_weight=2)
    _tables(tmp_path, ROWS)
    with pytest.raises(DatasetError, match="positive"):
        emphasis(tmp_path, IDS, LABELS, ALL, small_weight=0)


def test_unlisted_images_keep_the_plain_weight(tmp_path):
    _tables(tmp_path, ROWS[:1])  # only base_n is listed
    w = emphasis(tmp_path, ["base_n", "other"], np.array([0, 0]), np.arange(2), base_weight=3)
    assert w[0] == pytest.approx(3 * w[1])
