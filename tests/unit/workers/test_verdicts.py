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


def test_a_series_with_no_usable_slice_left_gets_an_empty_verdict():
    """Its slices failed in a newer pass, moved, or are another slice network's
    (``schema.series.slices_of`` leaves those out): an empty verdict, not its old one."""
    (empty,) = verdicts_of(SeriesStage(None, 0.5), "v", {3: []})
    assert (empty.series_id, empty.probability, empty.label, empty.slice_count) == (
        3,
        None,
        None,
        0,
    )
    (v,) = verdicts_of(SeriesStage(None, 0.5), "v", {3: [_row(1, -2.0, None)]})
    assert v.slice_count == 1 and not v.label and v.key_z_min is None


def test_a_one_slice_series_is_read_against_the_slice_threshold_not_the_stages():
    """With a series stage (threshold 0.98), an image that is its own series (`scan
    --series-by image`) gets the verdict its slice has: max of slices at the slice threshold,
    so a flagged image is a flagged series; a whole series keeps the stage's verdict."""
    import keras

    from hybrid_model.series import MIN_STAGE_SLICES, build_series_model

    keras.utils.set_random_seed(2)
    stage = SeriesStage(build_series_model(4 + 3, units=4), 0.98, slice_threshold=0.4)
    whole = [_row(i, -1.0 + 0.1 * i, 5.0 * i) for i in range(MIN_STAGE_SLICES)]
    one, normal = [_row(50, 1.0, None)], [_row(60, -1.0, None)]
    verdicts = {v.series_id: v for v in verdicts_of(stage, "v", {1: one, 2: normal, 3: whole})}
    assert verdicts[1].method == "max_of_slices" and verdicts[1].threshold == 0.4
    assert verdicts[1].label and verdicts[1].positive_slices == 1
    assert verdicts[2].method == "max_of_slices" and not verdicts[2].label
    assert verdicts[3].method == "series_stage" and verdicts[3].threshold == 0.98
    assert verdicts[3].label == (verdicts[3].probability >= 0.98)


def test_a_manifest_series_groups_images_but_never_overrides_a_dicom_uid_or_a_volume():
    hint = "series-0123456789abcdef01234567"
    a = series_ref("p/1/x.png", Placement(), SECRET, hint)
    b = series_ref("q/2/y.png", Placement(), SECRET, hint)
    assert a == b and a.source == "manifest" and a.study_key == "study-0123456789abcdef01234567"
    assert series_ref("k.dcm", Placement(series_uid=SERIES), SECRET, hint).source == "dicom"
    assert series_ref("v.nii", Placement(volume=True), SECRET, hint).source == "volume"


def test_an_image_hint_makes_the_image_its_own_series_and_study():
    """``scan --series-by image``: the producer's ``image-`` pseudonym is the series, source
    "image", its own study; it never overrides a DICOM UID or a volume either."""
    a = series_ref("head_ct/000.png", Placement(), SECRET, "image-00000000000000000000000a")
    b = series_ref("head_ct/001.png", Placement(), SECRET, "image-00000000000000000000000b")
    assert a.source == b.source == "image" and a != b
    assert a.study_key == "study-00000000000000000000000a" and a.study_key != b.study_key
    hint = "image-00000000000000000000000a"
    assert series_ref("k.dcm", Placement(series_uid=SERIES), SECRET, hint).source == "dicom"
    assert series_ref("x.png", Placement(), SECRET, "nodash").study_key == "study-nodash"
    assert series_ref("v.nii", Placement(volume=True), SECRET, hint).source == "volume"


def test_a_slice_that_leaves_a_series_changes_its_verdict(tmp_path):
    """``workers.pipeline.commit`` on SQLite: a failure of a newer pass takes a slice out of its
    series, and a slice rescored into another series leaves the first one empty; both series
    are recomputed in the same transaction."""
    from types import SimpleNamespace

    from sqlalchemy import select

    from schema.db import session_factory, upgrade
    from schema.models import Series
    from schema.series import SeriesRef
    from tests.utils.results import failure, job_with_scans, prediction
    from workers.pipeline import commit

    url = f"sqlite:///{tmp_path}/v.db"
    upgrade(url)
    sessions = session_factory(url)
    job, ids = job_with_scans(sessions, "leave", ["a", "b"])
    rt = SimpleNamespace(
        series_stage=SeriesStage(None, 0.5),
        model_version="v",
        threshold=0.5,
        settings=SimpleNamespace(series_max_slices=1024),
    )
    one, two = (
        SeriesRef("series-1", "study-1", "folder"),
        SeriesRef("series-2", "study-2", "folder"),
    )

    def row(key: str, p: float) -> dict:
        return dict(prediction(ids[key], p), z_mm=None, instance_number=None,
                    logit=float(np.log(p / (1 - p))), embedding=encode_embedding(np.zeros(2)))  # fmt: skip

    def state() -> dict[str, tuple]:
        with sessions() as session:
            rows = session.execute(
                select(Series.series_key, Series.slice_count, Series.probability)
            )
            return {k: (n, None if p is None else round(p, 3)) for k, n, p in rows}

    with sessions.begin() as session:
        commit(rt, session, job, [row("a", 0.9), row("b", 0.2)], [one, one], [], 1)
    assert state() == {"series-1": (2, 0.9)}
    with sessions.begin() as session:  # pass 2: "a" now fails
        commit(rt, session, job, [], [], [failure(ids["a"], "unreadable")], 2)
    assert state() == {"series-1": (1, 0.2)}
    with sessions.begin() as session:  # pass 3: "b" scored again, now in another series
        commit(rt, session, job, [row("b", 0.7)], [two], [], 3)
    assert state() == {"series-1": (0, None), "series-2": (1, 0.7)}
