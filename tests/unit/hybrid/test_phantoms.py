"""Synthetic phantoms: HU ranges, masks, files, labels and headers."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from hybrid_model.phantoms import generate, make_slice
from hybrid_model.preprocess import decode_native


@pytest.fixture(scope="module")
def slices():
    rng = np.random.default_rng(11)
    return [make_slice(rng, 128, hemorrhage=i % 2 == 0) for i in range(8)]


def test_hu_ranges_and_masks(slices):
    for hu, mask, label, meta in slices:
        assert hu.dtype == np.float32 and hu.shape == (128, 128)
        assert hu[0, 0] == -1000.0 and hu[-1, -1] == -1000.0  # air around the head
        assert 700 <= np.percentile(hu[hu > 400], 50) <= 1550  # skull
        assert mask.any() == bool(label) and meta["lesion_pixels"] == mask.sum()
        if label:
            assert np.median(hu[mask]) > 40 and set(meta["kinds"])
        brain = (hu > -50) & (hu < 60) & ~mask
        assert -10 < np.median(hu[brain]) < 50


def test_make_slice_is_deterministic():
    a = make_slice(np.random.default_rng(5), 64)
    b = make_slice(np.random.default_rng(5), 64)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_generate_writes_images_labels_and_masks(tmp_path):
    records = generate(tmp_path, 6, seed=3, fmt="mixed", size=64)
    with open(tmp_path / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert {r["hemorrhage"] for r in rows} <= {"0", "1"}
    for rec in records:
        path = tmp_path / rec["file"].split("/")[-1]
        assert decode_native(path.read_bytes(), path.name).shape == (64, 64, 3)
        mask_file = tmp_path / "masks" / f"{rec['id']}.png"
        assert mask_file.is_file() == bool(rec["hemorrhage"])
        if rec["hemorrhage"]:
            mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    dcm = pydicom.dcmread(records[0]["file"])
    assert dcm.Modality == "CT" and dcm.RescaleIntercept == -1024 and dcm.RescaleSlope == 1
    assert str(dcm.PatientName).startswith("PHANTOM^") and dcm.PatientID.startswith("PHANTOM-")
    png = cv2.imread(records[1]["file"], cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.ndim == 2


def test_png_phantom_is_the_brain_window_of_the_dicom(tmp_path):
    dcm_rec = generate(tmp_path / "d", 1, seed=9, fmt="dcm", size=64)[0]
    png_rec = generate(tmp_path / "p", 1, seed=9, fmt="png", size=64)[0]
    dcm = decode_native(Path(dcm_rec["file"]).read_bytes(), "a.dcm")
    # the stored grey (decoding estimates and undoes the window: hybrid_model.greywindow)
    png = cv2.imread(png_rec["file"], cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535.0
    np.testing.assert_allclose(png, dcm[..., 0], atol=0.02)  # HU rounded to integers


def test_generate_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, 1, seed=0, fmt="gif")
