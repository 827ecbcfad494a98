"""The public data layouts read as labelled entries with their split groups."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

from hybrid_model.layouts import LayoutError, detect, entries
from tests.utils.layouts import cq500, kaggle, phantom_slices, rsna


@pytest.fixture(scope="module")
def dicom_slices(tmp_path_factory):
    slices = phantom_slices(tmp_path_factory.mktemp("phantoms"), 18, seed=7)
    assert {label for _, label in slices} == {0, 1}
    return slices


def test_rsna_reads_the_any_label_once_and_groups_by_patient(tmp_path, dicom_slices):
    patient_of = rsna(tmp_path, dicom_slices)
    layout, found = entries(tmp_path)
    assert layout == "rsna" and len(found) == len(dicom_slices)  # duplicates read once
    label_of = {f"ID_{0xA0000 + i * 7919:x}": label for i, (_, label) in enumerate(dicom_slices)}
    assert {e.path.stem: e.label for e in found} == label_of
    groups = defaultdict(set)
    for e in found:
        groups[patient_of[e.path.stem]].add(e.group)
    assert all(len(g) == 1 for g in groups.values())  # one group per patient
    assert len({next(iter(g)) for g in groups.values()}) == len(groups)  # and distinct
    assert not any("PAT" in e.group for e in found)  # a digest, not the PatientID


def test_rsna_split_keeps_each_patient_on_one_side(tmp_path, dicom_slices):
    from hybrid_model.train import split

    rsna(tmp_path, dicom_slices * 2, per_patient=3)  # 12 patients
    _, found = entries(tmp_path)
    data = SimpleNamespace(
        labels=np.array([e.label for e in found]), groups=[e.group for e in found]
    )
    train_idx, val_idx = split(data, 0.25, seed=0)
    assert {data.groups[i] for i in train_idx}.isdisjoint({data.groups[i] for i in val_idx})
    assert len(train_idx) + len(val_idx) == len(found)


def test_cq500_labels_by_majority_and_groups_by_study(tmp_path, dicom_slices):
    studies = cq500(tmp_path, dicom_slices)
    layout, found = entries(tmp_path)
    assert layout == "cq500" and len(found) == len(dicom_slices)
    by_folder = defaultdict(set)
    for e in found:
        name = "CQ500-CT-" + e.path.parents[2].name.split()[0].removeprefix("CQ500CT")
        assert e.label == studies[name]  # the 2-of-3 majority, not reader 2
        by_folder[name].add(e.group)
    assert all(len(g) == 1 for g in by_folder.values())
    assert len(by_folder) == len(studies)


def test_kaggle_leading_space_column_and_zero_padded_names(tmp_path):
    slices = phantom_slices(tmp_path / "phantoms", 6, seed=8, fmt="png")
    kaggle(tmp_path / "kaggle", slices)
    layout, found = entries(tmp_path / "kaggle")
    assert layout == "labels"
    assert [(e.path.name, e.label) for e in found] == [
        (f"{i:03d}.png", label) for i, (_, label) in enumerate(slices)
    ]
    assert len({e.group for e in found}) == 1  # one folder: too few groups, split by image


def test_phantom_series_folders_are_groups(tmp_path):
    from hybrid_model.synth.write import generate_series

    generate_series(tmp_path, 2, seed=3, size=64, workers=1)
    _, found = entries(tmp_path)
    assert len({e.group for e in found}) == 2
    assert all(e.group for e in found)


def test_unknown_and_broken_layouts_say_what_they_expected(tmp_path):
    with pytest.raises(LayoutError, match="no known layout"):
        detect(tmp_path)
    (tmp_path / "stage_2_train.csv").write_text("image,label\nx,1\n")
    with pytest.raises(LayoutError, match="ID, Label"):
        entries(tmp_path)
    other = tmp_path / "cq"
    other.mkdir()
    (other / "reads.csv").write_text("name,R1:ICH\nCQ500-CT-1,1\n")
    with pytest.raises(LayoutError, match="R2:ICH, R3:ICH"):
        entries(other)
