"""Fixtures for hybrid_model tests: DICOM/PNG factories and tiny models (fast on 2 CPU cores)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.utils.gdcm_encode import gdcm_encode


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
    from tests.utils.networks import tiny_network

    return tiny_network(1234)


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


# --- Decoder tests: real CT files, re-encodings and a subprocess runner (an abort fails a test,
# it does not kill pytest). ---

REPO_ROOT = Path(__file__).resolve().parents[3]


def pydicom_file(name: str) -> bytes:
    """A pydicom bundled test file (CT_small.dcm, 693_J2KI.dcm, ...)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path)).read_bytes()


def read_dicom(data: bytes):
    import warnings

    import pydicom

    with warnings.catch_warnings():  # some bundled files are deliberately non-conformant
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True)


def j2k_ct(**attrs) -> bytes:
    """CT_small.dcm (128x128, signed, padding -2000) as JPEG 2000 lossless, then ``attrs`` set."""
    from pydicom.uid import JPEG2000Lossless

    ds = read_dicom(pydicom_file("CT_small.dcm"))
    ds.compress(JPEG2000Lossless)
    for key, value in attrs.items():
        setattr(ds, key, value)
    return dicom_bytes(ds)


def run_python(code: str, *args: str, timeout: float = 120.0):
    """Run ``code`` in a fresh interpreter at the repository root; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def helper_pools() -> Iterator[list[Any]]:
    """Pools a test starts, closed afterwards; also restores the shared pool's defaults."""
    from hybrid_model import isolated_decoder

    pools: list[Any] = []
    yield pools
    for pool in pools:
        pool.close()
    isolated_decoder.configure_default_pool()


def gdcm_abort_cases(tmp_path: Path) -> dict[str, bytes]:
    """Files that abort python-gdcm 3.x in-process (SIGABRT from a C++ gdcm::Exception):
    JPEG 2000 whose header says RGB / YBR_FULL with 1 sample, JPEG Lossless claiming 32 bits."""
    ct = pydicom_file("CT_small.dcm")
    jpeg_lossless = read_dicom(gdcm_encode(ct, tmp_path))
    jpeg_lossless.BitsAllocated = 32
    return {
        "j2k-rgb": j2k_ct(PhotometricInterpretation="RGB"),
        "j2k-ybr-full": j2k_ct(PhotometricInterpretation="YBR_FULL"),
        "jpeg-lossless-ba32": dicom_bytes(jpeg_lossless),
    }
