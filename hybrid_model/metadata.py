"""What a hemoscan model file says about itself, read without TensorFlow.

The metadata (version, input size, windows, training data, phantom flag, metrics, threshold,
disclaimer) is ``hemoscan_metadata.json`` inside the ``.keras`` zip. The producer and the
reports read it here: zip and JSON only, so they never import TensorFlow (an import-linter
contract in pyproject.toml says so).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from hybrid_model.errors import ModelError

METADATA_MEMBER = "hemoscan_metadata.json"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_MODEL_PATH = WEIGHTS_DIR / "demo.keras"
DEMO_SERIES_MODEL_PATH = WEIGHTS_DIR / "demo_series.keras"
DISCLAIMER = (
    "Research and triage tool, not a diagnosis. Weights trained on synthetic phantoms are not "
    "clinically valid."
)


class ModelLoadError(ModelError):
    """A model file is missing, corrupt or not a hemoscan model."""


def model_note(metadata: dict[str, Any]) -> str:
    """One line saying what a model file's weights are, from its metadata."""
    version = metadata.get("version", "?")
    if metadata.get("phantom_trained") or not metadata.get("clinically_valid"):
        return (
            f"model {version}: trained on synthetic phantoms, NOT clinically valid; "
            "research use only"
        )
    return f"model {version}: research and triage tool, not a diagnosis"


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in a .keras file (without loading TensorFlow)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if METADATA_MEMBER not in zf.namelist():
                return {}
            return json.loads(zf.read(METADATA_MEMBER))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model file not found: {path}") from exc
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelLoadError(f"model file is corrupt or not a .keras file: {path} ({exc})") from exc
