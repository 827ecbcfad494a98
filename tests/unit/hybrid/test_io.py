"""Model files: metadata inside the .keras file, clear errors for missing/corrupt files."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_model.io import DEMO_MODEL_PATH, ModelLoadError, load_model, read_metadata, save_model


def test_save_load_roundtrip(tmp_path, tiny_model):
    path = tmp_path / "m.keras"
    save_model(
        tiny_model, path, {"training_data": "test", "phantom_trained": True, "threshold": 0.3}
    )
    loaded = load_model(path)
    meta = loaded.metadata
    assert meta["training_data"] == "test" and meta["phantom_trained"] is True
    assert meta["clinically_valid"] is False and meta["threshold"] == 0.3
    assert meta["input_size"] == 32 and len(meta["windows"]) == 3 and meta["disclaimer"]
    assert "NOT clinically valid" in loaded.note
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(
        loaded.model.predict(x, verbose=0), tiny_model.predict(x, verbose=0), atol=1e-6
    )
    save_model(tiny_model, tmp_path / "again.keras", {})
    assert read_metadata(tmp_path / "again.keras")["version"] == meta["version"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(bad)


def test_demo_weights_are_labelled_phantom_trained():
    # The weights are committed (hemoscan's default model): a missing file is a packaging bug.
    assert DEMO_MODEL_PATH.is_file(), (
        f"the demo weights are missing: {DEMO_MODEL_PATH} (committed in git; an install or "
        "checkout that lost them cannot score with the default model)"
    )
    meta = read_metadata(DEMO_MODEL_PATH)
    assert meta["phantom_trained"] is True and meta["clinically_valid"] is False
    assert meta["metrics"]["roc_auc"] > 0.9 and 0 < meta["threshold"] < 1
    assert DEMO_MODEL_PATH.with_name("demo.metrics.json").is_file()
