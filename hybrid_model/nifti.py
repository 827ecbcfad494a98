"""NIfTI volumes (``.nii``, ``.nii.gz``) -> axial slices in Hounsfield units, with their z.

One object is one series. nibabel reads the header and applies the stored scaling
(``scl_slope``/``scl_inter``: converters such as dcm2niix store CT in HU that way); the volume
is turned to the closest canonical (RAS+) orientation, so its third axis runs from inferior to
superior, and each axial slice is shown as a radiologist sees it (anterior at the top, the
patient's right on the image's left), with its pixel spacing and its z in mm (the superior
coordinate of the slice's centre in the affine's space). Values are taken as HU, as stored; a
volume that is not a 3-D scalar image is refused with a reason, as DICOM is.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hybrid_model.errors import ImageTooLarge, UnreadableImage, UnsupportedImage

NIFTI_SUFFIXES = (".nii", ".nii.gz")
GZIP_MAGIC = b"\x1f\x8b"
MAX_SLICES = 2000


def is_nifti(data: bytes, name: str = "") -> bool:
    """By name (``.nii``, ``.nii.gz``) or by the NIfTI-1/2 header magic of an uncompressed file."""
    if name.lower().endswith(NIFTI_SUFFIXES):
        return True
    return len(data) >= 348 and data[344:348] in (b"n+1\x00", b"n+2\x00")


@dataclass(frozen=True)
class VolumeSlice:
    """One axial slice of a volume: HU (rows anterior -> posterior, columns patient right ->
    left), its index from the most inferior (0), z in mm, pixel spacing (row, column) in mm."""

    hu: np.ndarray
    index: int
    z_mm: float
    spacing_mm: tuple[float, float]
    thickness_mm: float


def _image(data: bytes, name: str):
    import nibabel as nib

    raw = data
    if data[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UnreadableImage(f"{name}: not a readable gzip stream ({exc})") from None
    try:
        header_kind = nib.Nifti2Image if raw[344:348] == b"n+2\x00" else nib.Nifti1Image
        return header_kind.from_stream(io.BytesIO(raw))
    except Exception as exc:  # nibabel raises many types on malformed headers
        raise UnreadableImage(f"{name}: not a readable NIfTI file ({type(exc).__name__})") from None


def read_volume(data: bytes, name: str, *, max_pixels: int) -> Iterator[VolumeSlice]:
    """The axial slices of a NIfTI volume, inferior to superior (see the module docstring).

    Raises ``UnreadableImage`` (corrupt or truncated), ``UnsupportedImage`` (not a 3-D scalar
    volume) or ``ImageTooLarge`` (more than ``max_pixels`` per slice or ``MAX_SLICES`` slices)
    before any slice is produced.
    """
    import nibabel as nib

    img = _image(data, name)
    shape = tuple(int(v) for v in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or min(shape) < 1:
        raise UnsupportedImage(f"{name}: a {len(shape)}-D NIfTI image; only 3-D volumes are read")
    if shape[0] * shape[1] > max_pixels or shape[2] > MAX_SLICES:
        raise ImageTooLarge(f"{name}: {shape[0]}x{shape[1]}x{shape[2]} voxels is over the limit")
    try:
        canonical = nib.as_closest_canonical(img if len(img.shape) == 3 else img.slicer[..., 0])
        volume = np.asarray(canonical.dataobj, dtype=np.float32)  # scaling applied
    except Exception as exc:  # truncated data, a bad affine
        raise UnreadableImage(
            f"{name}: NIfTI voxel data unreadable ({type(exc).__name__})"
        ) from None
    if volume.ndim != 3:
        raise UnsupportedImage(f"{name}: not a scalar volume")
    if not np.isfinite(volume).all():
        volume = np.nan_to_num(volume, nan=-1024.0, posinf=3071.0, neginf=-1024.0)
    zooms = [float(z) for z in canonical.header.get_zooms()[:3]]
    affine = canonical.affine
    centre = np.array([(volume.shape[0] - 1) / 2.0, (volume.shape[1] - 1) / 2.0, 0.0, 1.0])
    for k in range(volume.shape[2]):
        centre[2] = k
        z = float((affine @ centre)[2])
        # (x: left -> right, y: posterior -> anterior) -> rows anterior first, columns right first
        hu = np.ascontiguousarray(volume[:, :, k].T[::-1, ::-1])
        yield VolumeSlice(hu, k, z, (zooms[1], zooms[0]), zooms[2])


__all__ = ["NIFTI_SUFFIXES", "VolumeSlice", "is_nifti", "read_volume"]
