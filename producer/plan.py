"""What a scan is asked to do, and the checks that need neither the model nor the database.

Cheap to import (no SQLAlchemy, no TensorFlow), so `hemoscan scan /missing` answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hemoscan.dicomweb import DicomwebStore, Filters, is_dicomweb, service_root
from hemoscan.errors import ConfigurationError
from hemoscan.settings import Settings

SERIES_BY = ("folder", "image")


@dataclass
class ScanPlan:
    source: str
    job_name: str | None = None
    batch_size: int | None = None
    pattern: str | None = None
    manifest: Path | None = None
    rescore: bool = False
    # QIDO-RS filters of a DICOMweb source (None there: CT, no other filter).
    filters: Filters | None = None
    # What makes a series of images with no series of their own (PNG, JPEG, DICOM without a
    # SeriesInstanceUID) and no manifest series column: "folder" (the objects' folder) or
    # "image" (each image alone: a folder of unrelated exports, as the Kaggle set ships).
    series_by: str = "folder"


def normalise_source(source: str) -> str:
    if is_dicomweb(source):
        return f"dicomweb+{service_root(source)}"
    if source.startswith("s3://"):
        return source.rstrip("/")
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ConfigurationError(f"source folder does not exist: {path}")
    return str(path.resolve())


def check_plan(plan: ScanPlan, settings: Settings) -> str:
    """Validate a plan's arguments without touching the model or the queue; returns the
    normalised source. Raises ``ConfigurationError`` (or ``ManifestError``) naming the problem."""
    from hemoscan.storage import open_store

    if plan.series_by not in SERIES_BY:
        raise ConfigurationError(
            f"series_by must be one of {', '.join(SERIES_BY)}, not {plan.series_by!r}"
        )
    source = normalise_source(plan.source)
    store = open_store(source, settings)
    if is_dicomweb(source):
        if plan.manifest is not None or plan.pattern:
            raise ConfigurationError(
                "a DICOMweb source is selected by QIDO-RS filters (--modality, --study-date, "
                "--study-description, --series-description), not --manifest or --pattern"
            )
        if plan.series_by != "folder":
            raise ConfigurationError(
                "--series-by applies to images without series of their own; every instance "
                "of a DICOMweb source has its SeriesInstanceUID"
            )
        settings.effective_pseudonym_key()  # the locators are sealed with it
        assert isinstance(store, DicomwebStore)
        store.check()  # unreachable, or refusing the credentials: say so before a job exists
    elif plan.filters is not None:
        raise ConfigurationError(
            "QIDO-RS filters (--modality, --study-date, ...) apply to a DICOMweb source only"
        )
    if plan.series_by == "image":
        settings.effective_pseudonym_key()  # each image's series is named by it: fail now
    if plan.manifest is not None and not Path(plan.manifest).is_file():
        raise ConfigurationError(f"manifest does not exist: {plan.manifest}")
    return source
