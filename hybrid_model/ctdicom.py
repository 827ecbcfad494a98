"""One CT Image Storage dataset of HU pixels: what every phantom writer (and test) builds on.

int16 stored values = HU + 1024 with RescaleIntercept -1024 and slope 1, MONOCHROME2, one
frame, Explicit VR Little Endian; optionally PixelSpacing and a PixelPaddingValue for the
pixels at or below ``padding_hu``. Callers add their own patient, study and geometry
attributes, then ``save_as(..., enforce_file_format=True)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ct_dataset(
    hu: np.ndarray,
    *,
    spacing: float | None = None,
    sop_uid: str | None = None,
    padding_hu: float | None = None,
) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

    stored = np.clip(np.round(hu + 1024.0), -32768, 32767).astype(np.int16)
    sop = UID(sop_uid) if sop_uid else generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.Modality = "CT"
    ds.Rows, ds.Columns = (int(v) for v in stored.shape)
    if spacing is not None:
        ds.PixelSpacing = [round(float(spacing), 6)] * 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    if padding_hu is not None:
        padding = int(padding_hu) + 1024
        stored[hu <= padding_hu + 0.5] = padding
        ds.PixelPaddingValue = padding
    ds.PixelData = stored.tobytes()
    return ds
