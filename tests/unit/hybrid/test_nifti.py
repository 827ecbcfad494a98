"""NIfTI volumes -> axial HU slices as a radiologist sees them, with their z."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from hybrid_model.errors import ImageTooLarge, UnreadableImage, UnsupportedImage
from hybrid_model.nifti import is_nifti, read_volume


def _display(k: int) -> np.ndarray:
    """Slice k as shown: a marker at the top left (anterior, patient's right), k in a corner."""
    img = np.full((20, 30), 30.0, np.float32)
    img[2:5, 3:6] = 80.0
    img[-1, -1] = float(k)
    return img


def _bytes(volume: np.ndarray, affine: np.ndarray, slope: float = 1.0, inter: float = 0.0,
           dtype=np.float32) -> bytes:  # fmt: skip
    img = nib.Nifti1Image(volume.astype(dtype), affine)
    img.header.set_slope_inter(slope, inter)
    return img.to_bytes()


def _ras_volume(n: int = 4) -> np.ndarray:
    # data[x, y, k]: x towards the patient's right, y towards anterior
    return np.stack([_display(k)[::-1, ::-1].T for k in range(n)], axis=-1)


def test_slices_come_out_as_shown_with_spacing_and_z():
    affine = np.diag([0.5, 0.6, 5.0, 1.0])
    affine[:3, 3] = (-10.0, -20.0, -40.0)
    slices = list(read_volume(_bytes(_ras_volume(), affine), "v.nii", max_pixels=10**6))
    assert [s.index for s in slices] == [0, 1, 2, 3]
    for s in slices:
        np.testing.assert_array_equal(s.hu, _display(s.index))
        assert s.spacing_mm == pytest.approx((0.6, 0.5)) and s.thickness_mm == 5.0
    assert [s.z_mm for s in slices] == pytest.approx([-40.0, -35.0, -30.0, -25.0])


def test_an_lps_stored_gzipped_volume_with_scaling_gives_the_same_hu():
    # stored as x towards the left, y towards posterior, slices superior to inferior, in
    # int16 with HU = 1 * value - 1024 (as converters store CT)
    stored = _ras_volume()[::-1, ::-1, ::-1] + 1024.0
    affine = np.diag([-0.5, -0.6, -5.0, 1.0])
    data = gzip.compress(_bytes(stored, affine, 1.0, -1024.0, np.int16))
    slices = list(read_volume(data, "v.nii.gz", max_pixels=10**6))
    for s in slices:
        np.testing.assert_array_equal(s.hu, _display(s.index))
    assert np.all(np.diff([s.z_mm for s in slices]) > 0)  # inferior to superior


def test_bad_volumes_are_refused_with_a_reason():
    good = _bytes(_ras_volume(), np.eye(4))
    with pytest.raises(UnreadableImage):
        list(read_volume(good[:200], "v.nii", max_pixels=10**6))
    with pytest.raises(UnreadableImage):
        list(read_volume(b"\x1f\x8b" + b"garbage" * 20, "v.nii.gz", max_pixels=10**6))
    with pytest.raises(UnreadableImage):
        list(read_volume(good[:-500], "v.nii", max_pixels=10**6))  # truncated voxel data
    four_d = _bytes(np.zeros((4, 4, 3, 2)), np.eye(4))
    with pytest.raises(UnsupportedImage, match="4-D"):
        list(read_volume(four_d, "v.nii", max_pixels=10**6))
    with pytest.raises(ImageTooLarge):
        list(read_volume(good, "v.nii", max_pixels=100))


def test_nifti_is_known_by_name_or_magic():
    data = _bytes(_ras_volume(), np.eye(4))
    assert is_nifti(data) and is_nifti(b"", "a/B.NII.GZ") and not is_nifti(b"x" * 400, "a.dcm")


@pytest.fixture(scope="module")
def phantom_volume(tmp_path_factory) -> tuple[bytes, list]:
    """A phantom head series (DICOM) and the same series as a NIfTI volume."""
    from pathlib import Path

    from tests.utils.archive import dicom_series_to_nifti, make_series

    folder = tmp_path_factory.mktemp("volume")
    records = make_series(folder / "src", 1, seed=11, size=128)
    files = [Path(r["file"]) for r in records]
    return dicom_series_to_nifti(files, folder / "v.nii.gz").read_bytes(), files


def test_a_volume_decodes_to_every_axial_slice_with_its_place(phantom_volume):
    """``decode_object``: one Decoded per axial slice, inferior first, resized to the model,
    each placed (index, z, volume); a DICOM slice of the same series carries its UIDs, its
    InstanceNumber and its z along the slice normal."""
    import pydicom

    from hybrid_model.preprocess import DecodeOptions, decode_object

    data, files = phantom_volume
    ungated = DecodeOptions(head_gate=False)  # the skull base slices are judged one by one
    images = decode_object(data, "v.nii.gz", size=64)
    assert len(images) == len(files) and all(d.pixels.shape == (64, 64, 3) for d in images)
    assert [d.placement.index for d in images] == list(range(len(files)))
    assert all(d.placement.volume and d.placement.series_uid is None for d in images)
    z = [d.placement.z_mm for d in images]
    assert np.all(np.diff(z) > 0)
    first = pydicom.dcmread(files[0])
    (dicom,) = decode_object(files[0].read_bytes(), "a.dcm", size=64, options=ungated)
    assert dicom.placement.series_uid == str(first.SeriesInstanceUID)
    assert dicom.placement.study_uid == str(first.StudyInstanceUID)
    assert not dicom.placement.volume and dicom.placement.instance == int(first.InstanceNumber)
    assert dicom.placement.z_mm is not None  # along the normal (tilt included): docs in dicom.py


def test_a_volume_that_is_not_a_head_is_refused_whole_unless_the_gate_is_off():
    from hybrid_model.errors import NotHead
    from hybrid_model.preprocess import DecodeOptions, decode_object

    water = _bytes(np.zeros((64, 64, 5)), np.diag([0.5, 0.5, 5.0, 1.0]))
    with pytest.raises(NotHead):
        decode_object(water, "w.nii", size=32)
    assert len(decode_object(water, "w.nii", size=32, options=DecodeOptions(head_gate=False))) == 5
