"""A series' verdict as a DICOM SR (``hybrid_model.dicom_results``): a valid Comprehensive 3D
SR (``dciodvfy``, dicom3tools) that says what it found, with which model, on which slices, and
that it is research output; patient and study copied from the source, UIDs new and stable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from hybrid_model.dicom_results import (
    SeriesResult,
    heatmap_map,
    series_report,
    source_grid,
    statement,
)
from tests.utils.archive import make_series
from tests.utils.dciodvfy import dciodvfy

RESULT = SeriesResult(
    probability=0.873125,
    label=True,
    threshold=0.41,
    method="series_stage",
    model_version="demo-test-v1",
    trained_on="synthetic CT phantoms",
    key_slices=(2, 5),
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[pydicom.Dataset]:  # type: ignore[no-untyped-def]
    records = make_series(tmp_path_factory.mktemp("series"), 1, seed=3, size=64)
    out: list[pydicom.Dataset] = []
    for r in records:
        ds = pydicom.dcmread(r["file"], stop_before_pixels=True)
        ds.PatientName, ds.PatientID = "Phantom^Test", "PHANTOM-7"
        out.append(ds)
    return out


def _items(ds: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    for item in getattr(ds, "ContentSequence", []):
        yield item
        yield from _items(item)


def _named(ds: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [i for i in _items(ds) if i.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def _valid(ds: pydicom.Dataset, path: Path) -> pydicom.Dataset:
    """``ds`` written to ``path``, checked by dciodvfy (no error; warnings printed), read back."""
    ds.save_as(path, enforce_file_format=True)
    errors, warnings = dciodvfy(path)
    assert not errors, "\n".join(errors)
    print("dciodvfy warnings:", *warnings, sep="\n  ")
    return pydicom.dcmread(path)


def test_the_report_is_a_valid_comprehensive_3d_sr(sources, tmp_path):
    sr = series_report(sources, RESULT, entropy=["job-1", "series-a"])
    back = _valid(sr, tmp_path / "sr.dcm")
    assert back.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert back.ContentTemplateSequence[0].TemplateIdentifier == "1500"


def test_it_says_what_was_found_by_which_model_on_which_slices(sources, tmp_path):
    sr = series_report(sources, RESULT, entropy=["job-1", "series-a"])
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    [probability] = _named(back, "Probability")
    assert float(probability.MeasuredValueSequence[0].NumericValue) == RESULT.probability
    [finding] = [
        i for i in _named(back, "Intracranial hemorrhage (disorder)") if i.ValueType == "CODE"
    ]
    assert finding.ConceptCodeSequence[0].CodeMeaning == "Present"
    versions = [i.TextValue for i in _named(back, "Algorithm Version")]
    assert versions and set(versions) == {RESULT.model_version}
    [comment] = _named(back, "Comment")
    assert comment.TextValue == statement(RESULT)
    assert "not a diagnosis" in comment.TextValue and "phantoms" in comment.TextValue
    referenced = {
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for i in _items(back)
        if i.ValueType == "IMAGE"
    }
    assert referenced == {sources[i].SOPInstanceUID for i in RESULT.key_slices}


def test_patient_and_study_come_from_the_source_and_the_uids_are_new_and_stable(sources):
    first = series_report(sources, RESULT, entropy=["job-1", "series-a"], uid_root="1.2.3.")
    again = series_report(sources, RESULT, entropy=["job-1", "series-a"], uid_root="1.2.3.")
    other = series_report(sources, RESULT, entropy=["job-1", "series-b"], uid_root="1.2.3.")
    src = sources[0]
    assert (first.PatientName, first.PatientID) == (src.PatientName, src.PatientID)
    assert first.StudyInstanceUID == src.StudyInstanceUID
    assert first.SeriesInstanceUID != src.SeriesInstanceUID
    assert first.SOPInstanceUID.startswith("1.2.3.")
    assert (again.SeriesInstanceUID, again.SOPInstanceUID) == (
        first.SeriesInstanceUID,
        first.SOPInstanceUID,
    ), "the same result written twice is the same object"
    assert other.SOPInstanceUID != first.SOPInstanceUID
    # Nothing of the source's series or equipment is copied.
    assert first.Modality == "SR" and first.Manufacturer == "hemoscan"
    assert "not for diagnosis" in first.SeriesDescription


def test_a_report_needs_a_source_and_key_slices_among_them(sources):
    with pytest.raises(ValueError, match="at least one"):
        series_report([], RESULT, entropy=["j"])
    wrong = SeriesResult(0.1, False, 0.5, "max_of_slices", "v", "phantoms", key_slices=(99,))
    with pytest.raises(ValueError, match="key slices"):
        series_report(sources, wrong, entropy=["j"])


def test_a_map_is_a_valid_parametric_map_on_the_slices_own_grid(sources, tmp_path):
    """The Grad-CAM map of the letterboxed model input, back on the source's rows and
    columns: a blob in the map lands where ``source_grid`` puts it, values kept (float)."""
    source = sources[4]
    cam = np.zeros((16, 16), np.float32)
    cam[4:6, 10:12] = 0.9
    pm = heatmap_map(source, cam, RESULT, entropy=["job-1", "series-a"])
    back = _valid(pm, tmp_path / "pm.dcm")
    assert back.SOPClassUID == pydicom.uid.ParametricMapStorage
    assert (back.Rows, back.Columns) == (source.Rows, source.Columns)
    assert back.FrameOfReferenceUID == source.FrameOfReferenceUID
    expected = source_grid(cam, (source.Rows, source.Columns))
    np.testing.assert_allclose(back.pixel_array, expected, atol=1e-6)
    peak = np.unravel_index(int(np.argmax(back.pixel_array)), back.pixel_array.shape)
    assert peak[0] < source.Rows / 2 and peak[1] > source.Columns / 2  # upper right, as drawn
    mapping = back.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.LUTLabel == "GRADCAM"


def test_source_grid_undoes_the_letterbox():
    """A wide image is letterboxed top and bottom: the map's padding rows are cut off."""
    cam = np.zeros((8, 8), np.float32)
    cam[:2] = 1.0  # the top quarter of the square: padding for a 100 x 200 image
    grid = source_grid(cam, (100, 200))
    assert grid.shape == (100, 200)
    assert grid[-1].max() < 0.05 and grid[0].max() < 1.0
