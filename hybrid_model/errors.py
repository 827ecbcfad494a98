"""Typed image errors. Each class carries ``reason``: the failure code recorded for that input.

``str(exc)`` is a sentence a person can act on; ``exc.reason`` is the machine-readable code the
workers store in a failure row (DESIGN.md, "Bad input is data, not a crash").
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of the model library's errors that are a person's to fix (a missing model file, an
    empty data folder): the command line prints them as one line. hybrid_model imports nothing
    of hemoscan's other packages, so this is its own base, next to ``HemoscanError``."""


class ImageError(Exception):
    """Base class for an input image that cannot be scored."""

    reason = "unreadable"


class EmptyImage(ImageError):
    """The input has zero bytes."""

    reason = "empty"


class UnreadableImage(ImageError):
    """Truncated, undecodable, random bytes, or a DICOM file without pixel data."""

    reason = "unreadable"


class UnsupportedImage(ImageError):
    """Unsupported transfer syntax, multi-frame DICOM, or an unknown format."""

    reason = "unsupported"


class ImageTooLarge(ImageError):
    """Byte size or pixel count over the limit (checked from the header before decoding)."""

    reason = "too_large"


class NotCT(ImageError):
    """A DICOM file whose modality is not CT."""

    reason = "not_ct"


class NotHead(ImageError):
    """A CT slice that is not of a head (chest, abdomen, spine, a scout, no brain in a skull):
    the model was trained on head CT only, so its score would mean nothing. Decided from the
    image by ``hybrid_model.scope``; DecodeOptions.head_gate turns the check off."""

    reason = "not_head"


# The reasons an image can fail with (``hemoscan predict``'s ``error`` field).
REASONS = ("empty", "unreadable", "unsupported", "too_large", "not_ct", "not_head")
