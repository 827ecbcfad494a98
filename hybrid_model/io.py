"""Save and load models with their metadata inside the ``.keras`` file.

The metadata (version, input size, windows, training data, phantom flag, metrics, threshold,
disclaimer) is written as ``hemoscan_metadata.json`` inside the ``.keras`` zip, so a model file
copied anywhere still says what it is and whether it is clinically valid. Keras ignores the extra
member when loading.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_model.metadata import (
    DEMO_MODEL_PATH,
    DEMO_SERIES_MODEL_PATH,
    DISCLAIMER,
    METADATA_MEMBER,
    ModelLoadError,
    model_note,
    read_metadata,
)

__all__ = [
    "DEMO_MODEL_PATH",
    "DEMO_SERIES_MODEL_PATH",
    "DISCLAIMER",
    "METADATA_MEMBER",
    "LoadedModel",
    "ModelLoadError",
    "load_model",
    "model_note",
    "read_metadata",
    "save_model",
]


@dataclass
class LoadedModel:
    model: Any  # keras.Model (not imported here so this module stays cheap to import)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def threshold(self) -> float:
        return float(self.metadata.get("threshold", 0.5))

    @property
    def input_size(self) -> int:
        return int(self.metadata.get("input_size") or self.model.input_shape[1])

    @property
    def framing(self) -> str:
        """What of a slice the network sees (``preprocess.model_frame``); letterbox before
        the key existed."""
        return str(self.metadata.get("framing") or "letterbox")

    @property
    def note(self) -> str:
        """One line saying what the weights are; shown next to every score."""
        return model_note(self.metadata)


def weights_version(model: Any) -> str:
    """Short SHA-256 of the weight values: identical weights give the identical version."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


def default_metadata(model: Any) -> dict[str, Any]:
    from hybrid_model.preprocess import WINDOWS

    return {
        "version": weights_version(model),
        "input_size": int(model.input_shape[1]) if model.input_shape[1] else None,
        "windows": [list(w) for w in WINDOWS],
        "training_data": "unknown",
        "phantom_trained": False,
        "clinically_valid": False,
        "metrics": {},
        "threshold": 0.5,
        "disclaimer": DISCLAIMER,
    }


def save_model(model: Any, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write ``model`` to ``path`` (.keras) with ``metadata`` stored inside the file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = default_metadata(model)
    meta.update(metadata)
    meta["version"] = weights_version(model)  # always the hash of what is actually saved
    tmp = path.with_name(path.name + ".tmp.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        zf.writestr(METADATA_MEMBER, json.dumps(meta, indent=2, sort_keys=True, default=float))
    tmp.replace(path)


def load_model(path: str | Path) -> LoadedModel:
    """Load a .keras model and its metadata; ``ModelLoadError`` for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    metadata = read_metadata(path)
    from hybrid_model.tfenv import load_tensorflow

    load_tensorflow()
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise ModelLoadError(f"could not load model {path}: {exc}") from exc
    if not metadata:
        metadata = default_metadata(model)
        metadata["training_data"] = "unknown (no hemoscan metadata in the file)"
    return LoadedModel(model=model, metadata=metadata, path=str(path))
