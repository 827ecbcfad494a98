"""`hemoscan phantoms`, `train` and `evaluate` through hemoscan.cli.main on tiny data."""

from __future__ import annotations

import json

import pytest

from hemoscan.cli import main

pytestmark = pytest.mark.slow


def test_train_then_evaluate_smoke(tmp_path, capsys, monkeypatch):
    import hybrid_model.train as train_module

    data, model = tmp_path / "data", tmp_path / "m.keras"
    assert (
        main(["phantoms", "--out", str(data), "--count", "16", "--seed", "4", "--size", "32"]) == 0
    )
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, **k: real_train(*a, size=32, **k))
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(model),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--val-split",
                "0.25",
                "--patience",
                "1",
                "--filters",
                "4,8,16,32",
                "--grey-share",
                "0.5",
            ]
        )
        == 0
    )
    assert model.is_file() and model.with_name("m.metrics.json").is_file()
    from hybrid_model.io import load_model

    loaded = load_model(model)
    assert loaded.model.get_layer("conv1").get_weights()[0].shape[-1] == 4
    assert "50% of the three-window training slices" in loaded.metadata["augmentation"]
    assert main(["evaluate", "--data", str(data), "--model", str(model), "--json"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert {"roc_auc", "classification_report", "confusion_matrix"} <= metrics.keys()
    assert "pointing_game" in metrics and "Grad-CAM pointing game" in out
