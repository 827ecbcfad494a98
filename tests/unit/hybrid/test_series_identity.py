"""Series identity and slice position read in the same parse as the pixels."""

from __future__ import annotations

import numpy as np
import pydicom

from hybrid_model.dicom import SeriesIdentity, decode_dicom, series_identity
from hybrid_model.synth.write import generate_series


def test_a_phantom_series_orders_by_position_along_the_normal(tmp_path):
    generate_series(tmp_path, 1, seed=21, size=64, workers=1)
    files = sorted((tmp_path / "s00000").glob("*.dcm"))
    ids = [decode_dicom(f.read_bytes(), f.name, max_pixels=10**6).identity for f in files]
    assert len({i.study_uid for i in ids}) == 1 and len({i.series_uid for i in ids}) == 1
    assert ids[0].study_uid != ids[0].series_uid
    by_z = [i.instance for i in sorted(ids, key=lambda i: i.z_mm)]
    assert by_z == sorted(i.instance for i in ids)  # z along the normal follows the instances
    steps = np.diff(sorted(i.z_mm for i in ids))
    ds = pydicom.dcmread(files[0])
    spacing = float(ds.get("SpacingBetweenSlices", ds.SliceThickness))
    np.testing.assert_allclose(steps, spacing, atol=0.01)  # tilted gantry included
    assert ids[0].thickness_mm == float(ds.SliceThickness)


def test_a_tilted_slice_is_placed_along_its_own_normal():
    tilt = np.deg2rad(20)
    orientation = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), -np.sin(tilt))
    normal = np.cross(orientation[:3], orientation[3:])
    at = 12.5 * normal + 4.0 * np.asarray(orientation[:3])  # moved along a row: same z
    ident = SeriesIdentity(position=tuple(at), orientation=orientation)
    assert abs(ident.z_mm - 12.5) < 1e-9


def test_missing_or_malformed_elements_are_none():
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.Dataset()
    ds[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 2, b"x7", 0, True, True)
    ds.ImagePositionPatient = [1, 2]
    ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]  # parallel rows and columns: no normal
    ident = series_identity(ds)
    assert ident.instance is None and ident.position is None and ident.study_uid is None
    assert SeriesIdentity(position=(0, 0, 0), orientation=ident.orientation).z_mm is None
