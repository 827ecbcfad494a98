"""Which series a slice belongs to (keyed pseudonyms, never UIDs) and a series verdict's key
slices, from stored slice rows (no services, no model: max-of-slices)."""

from __future__ import annotations

import numpy as np

from hybrid_model.preprocess import Placement
from hybrid_model.series import SeriesStage
from schema.series import SliceRow
from workers.verdicts import encode_embedding, series_ref, verdicts_of

SECRET = b"a-test-secret-of-enough-length"
STUDY, SERIES = "1.2.826.0.1.3680043.8.498.111", "1.2.826.0.1.3680043.8.498.222"


def test_dicom_slices_are_grouped_by_keyed_pseudonyms_of_their_uids():
    slice_ = Placement(study_uid=STUDY, series_uid=SERIES, z_mm=5.0)
    ref = series_ref("any/folder/ID_1.dcm", slice_, SECRET)
    again = series_ref("elsewhere/ID_2.dcm", slice_, SECRET)
    assert ref == again and ref.source == "dicom"
    assert STUDY not in repr(ref) and SERIES not in repr(ref)
    assert ref.series_key.startswith("series-") and ref.study_key.startswith("study-")
    assert series_ref("k", slice_, b"another-secret-of-enough-len") != ref
    no_study = series_ref("k", Placement(series_uid=SERIES), SECRET)
    assert no_study.series_key == ref.series_key and no_study.study_key != ref.study_key


def test_a_volume_is_its_own_series_and_a_folder_groups_the_rest():
    vol = Placement(index=3, z_mm=1.0, volume=True)
    assert series_ref("v/a.nii.gz", vol, SECRET).source == "volume"
    assert series_ref("v/a.nii.gz", vol, SECRET) != series_ref("v/b.nii.gz", vol, SECRET)
    a, b = (
        series_ref("p/1/x.png", Placement(), SECRET),
        series_ref("p/1/y.png", Placement(), SECRET),
    )
    assert a == b and a.source == "folder" and a.study_key != a.series_key
    assert series_ref("p/2/x.png", Placement(), SECRET) != a


def _row(i: int, logit: float, z: float | None) -> SliceRow:
    return SliceRow(100 + i, 0, z, i + 1, f"k{i}", float(1 / (1 + np.exp(-logit))), logit,
                    encode_embedding(np.zeros(4)))  # fmt: skip


def test_key_slices_are_the_top_three_and_their_z_range_is_the_positive_slices():
    rows = [_row(i, lg, z) for i, (lg, z) in enumerate(
        [(-3, 0.0), (2.5, 5.0), (4.0, 10.0), (-1, 15.0), (0.1, 20.0)])]  # fmt: skip
    (v,) = verdicts_of(SeriesStage(None, 0.9), "v1", {7: rows})
    assert v.series_id == 7 and v.method == "max_of_slices" and v.slice_count == 5
    assert [k["prediction_id"] for k in v.key_slices] == [102, 101, 104]
    assert v.positive_slices == 2 and (v.key_z_min, v.key_z_max) == (5.0, 10.0)
    assert v.label and v.probability == max(r.probability for r in rows)


def test_slices_without_an_embedding_are_left_out_and_empty_series_get_no_verdict():
    bare = SliceRow(1, 0, 0.0, 1, "k", 0.9, None, None)  # a row of round 1
    assert verdicts_of(SeriesStage(None, 0.5), "v", {3: [bare]}) == []
    (v,) = verdicts_of(SeriesStage(None, 0.5), "v", {3: [bare, _row(1, -2.0, None)]})
    assert v.slice_count == 1 and not v.label and v.key_z_min is None


def test_a_manifest_series_groups_images_but_never_overrides_a_dicom_uid_or_a_volume():
    hint = "series-0123456789abcdef01234567"
    a = series_ref("p/1/x.png", Placement(), SECRET, hint)
    b = series_ref("q/2/y.png", Placement(), SECRET, hint)
    assert a == b and a.source == "manifest" and a.study_key == "study-0123456789abcdef01234567"
    assert series_ref("k.dcm", Placement(series_uid=SERIES), SECRET, hint).source == "dicom"
    assert series_ref("v.nii", Placement(volume=True), SECRET, hint).source == "volume"
