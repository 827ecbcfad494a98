"""What a scan is asked to do, and the checks that need neither the model nor the database.

Cheap to import (no SQLAlchemy, no TensorFlow), so `hemoscan scan /missing` answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hemoscan.errors import ConfigurationError
from hemoscan.settings import Settings


@dataclass
class ScanPlan:
    source: str
    job_name: str | None = None
    batch_size: int | None = None
    pattern: str | None = None
    manifest: Path | None = None
    rescore: bool = False


def normalise_source(source: str) -> str:
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

    source = normalise_source(plan.source)
    open_store(source, settings)
    if plan.manifest is not None and not Path(plan.manifest).is_file():
        raise ConfigurationError(f"manifest does not exist: {plan.manifest}")
    return source
