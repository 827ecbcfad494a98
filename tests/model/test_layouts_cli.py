"""Each public data layout trains and evaluates through the CLI (hemoscan.cli.main)."""

from __future__ import annotations

import json
import logging

import pytest

from hemoscan.cli import main
from tests.utils.layouts import cq500, kaggle, phantom_slices, rsna

pytestmark = pytest.mark.slow


@pytest.fixture
def small_train(monkeypatch):
    import hybrid_model.train as train_module

    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, **k: real_train(*a, size=32, **k))


def _train_and_evaluate(data, model, capsys) -> dict:
    args = ["train", "--data", str(data), "--out", str(model), "--epochs", "1",
            "--batch-size", "8", "--val-split", "0.3", "--patience", "1",
            "--filters", "4,8,16,32"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(data), "--model", str(model), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("layout", ["rsna", "cq500", "kaggle"])
def test_layout_trains_and_evaluates(layout, tmp_path, capsys, caplog, small_train):
    fmt = "png" if layout == "kaggle" else "dcm"
    slices = phantom_slices(tmp_path / "phantoms", 24, seed=11, fmt=fmt)
    data = tmp_path / layout
    {"rsna": rsna, "cq500": cq500, "kaggle": kaggle}[layout](data, slices)
    with caplog.at_level(logging.INFO, logger="hybrid_model"):
        metrics = _train_and_evaluate(data, tmp_path / "m.keras", capsys)
    assert metrics["count"] > 0 and "roc_auc" in metrics
    grouped = [r.getMessage() for r in caplog.records if "split by group" in r.getMessage()]
    if layout == "rsna":  # 8 patients of 3 slices: split by patient, never by slice
        assert grouped == ["split by group: 8 groups"]
    elif layout == "cq500":  # 12 studies of 2 slices
        assert grouped == ["split by group: 12 groups"]
    else:  # one flat folder: by image
        assert grouped == []
