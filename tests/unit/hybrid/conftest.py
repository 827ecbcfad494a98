"""Fixtures for hybrid_model tests: DICOM/PNG factories and tiny models (fast on 2 CPU cores)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest


def make_dicom(
    hu: np.ndarray,
    *,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    signed: bool = True,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    frames: int = 1,
    pixel_data: bool = True,
    stored: np.ndarray | None = None,
):
    """A pydicom Dataset holding ``hu`` (stored = (hu - intercept) / slope unless ``stored``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    if stored is None:
        stored = np.round((np.asarray(hu, np.float64) - intercept) / slope)
    stored = stored.astype(np.int16 if signed else np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "PHANTOM^TEST"
    ds.PatientID = "PHANTOM-TEST"
    ds.Modality = modality
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if frames > 1:
        ds.NumberOfFrames = frames
        stored = np.stack([stored] * frames)
    if pixel_data:
        ds.PixelData = stored.tobytes()
    return ds


def dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def hu_ramp() -> np.ndarray:
    """A 32x48 HU image from -1000 to +1500 with a few exact landmark values."""
    hu = np.linspace(-1000, 1500, 32 * 48).reshape(32, 48).round()
    hu[0, :5] = [0, 40, 80, -20, 100]
    return hu.astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model():
    """The real architecture at 32x32 input with few units: fast to build and run."""
    import keras

    from hybrid_model.network import build_model

    keras.utils.set_random_seed(1234)
    return build_model((32, 32, 3), filters=(4, 8, 8), lstm_units=8, gru_units=4, dense_units=4)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tiny_model) -> Path:
    from hybrid_model.io import save_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(
        tiny_model,
        path,
        {"training_data": "untrained test model", "phantom_trained": True, "threshold": 0.5},
    )
    return path
