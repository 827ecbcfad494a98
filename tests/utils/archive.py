"""Phantom archives and small models for pipeline tests."""

from __future__ import annotations

import os
from pathlib import Path

from hemoscan.storage import ObjectStore

# Bad objects and the failure reason each must end with.
BAD_OBJECTS = {
    "bad/empty.png": ("empty", b""),
    "bad/truncated.dcm": ("unreadable", None),  # a real phantom DICOM cut short
    "bad/not-an-image.png": ("unsupported", b"plain text, not pixels\n" * 10),
}


def make_phantoms(folder: Path, count: int, seed: int = 7) -> list[Path]:
    from hybrid_model.phantoms import generate

    records = generate(folder, count=count, seed=seed, fmt="mixed", size=128)
    return [Path(r["file"]) for r in records]


def upload_archive(store: ObjectStore, files: list[Path], bad: bool = True) -> dict[str, str]:
    """Put phantom files (and the bad objects) in ``store``; returns {bad key: reason}."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: store.put(f"ct/{p.name}", p.read_bytes()), files))
    expected: dict[str, str] = {}
    if bad:
        dcm = next(p for p in files if p.suffix == ".dcm")
        for key, (reason, data) in BAD_OBJECTS.items():
            store.put(key, dcm.read_bytes()[:700] if data is None else data)
            expected[key] = reason
    return expected


def make_tiny_model(path: Path, size: int = 64, framing: str = "letterbox") -> Path:
    """A small, untrained hybrid model (same architecture, fewer filters) for fast tests;
    ``framing`` is what of a slice it sees (``preprocess.model_frame``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hybrid_model.io import save_model
    from hybrid_model.network import build_model

    model = build_model((size, size, 3), filters=(4, 8, 8), lstm_units=8, gru_units=8)
    save_model(
        model,
        path,
        {
            "training_data": "untrained test model",
            "phantom_trained": True,
            "threshold": 0.5,
            "framing": framing,
        },
    )
    return path


def make_series(folder: Path, count: int, seed: int, size: int = 128) -> list[dict]:
    """``count`` phantom series of DICOM slices (skull base to vertex) in ``folder/sNNNNN/``;
    returns the generator's slice records (series, file, hemorrhage, z_mm)."""
    from hybrid_model.synth.write import generate_series

    return generate_series(folder, count, seed, fmt="dcm", size=size, workers=1)


def dicom_series_to_nifti(files: list[Path], out: Path) -> Path:
    """One phantom DICOM series written as a NIfTI volume of HU (``.nii.gz``), inferior slice
    first, with the affine ``hybrid_model.nifti`` reads back into the same display."""
    import nibabel as nib
    import numpy as np
    import pydicom

    slices = []
    for f in files:
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), hu, ds))
    slices.sort(key=lambda s: s[0])
    # display (rows anterior -> posterior, columns right -> left) -> RAS voxel axes
    volume = np.stack([hu[::-1, ::-1].T for _, hu, _ in slices], axis=2)
    row_mm, col_mm = (float(v) for v in slices[0][2].PixelSpacing)
    step = (slices[-1][0] - slices[0][0]) / max(len(slices) - 1, 1) or 5.0
    affine = np.diag([col_mm, row_mm, step, 1.0])
    affine[2, 3] = slices[0][0]
    image = nib.Nifti1Image(volume.astype(np.int16), affine)
    image.header.set_slope_inter(1.0, 0.0)
    nib.save(image, str(out))
    return out
