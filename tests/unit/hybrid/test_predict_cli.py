"""`hemoscan predict/phantoms/train/evaluate` through hemoscan.cli.main, on tiny models and data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hemoscan.cli import main
from hybrid_model.phantoms import generate


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    dcm = generate(root / "d", 1, seed=2, fmt="dcm", size=64)[0]["file"]
    png = generate(root / "p", 1, seed=2, fmt="png", size=64)[0]["file"]
    bad = root / "broken.dcm"
    bad.write_bytes(b"\x00" * 10)
    return dcm, png, str(bad)


def test_predict_json_png_and_dicom(images, tiny_model_path, tmp_path, capsys):
    dcm, png, bad = images
    heat = tmp_path / "heat"
    code = main(
        [
            "predict",
            dcm,
            png,
            bad,
            "--model",
            str(tiny_model_path),
            "--json",
            "--heatmaps",
            str(heat),
        ]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 3  # one unreadable file: reported, the others scored
    for row, src in zip(lines[:2], (dcm, png), strict=True):
        assert row["image"] == src and 0 <= row["probability"] <= 1
        assert row["label"] in ("hemorrhage", "normal")
        if row["peak"] is None:  # an all-zero map has no peak (the untrained tiny model)
            assert not np.load(row["raw_heatmap"]).any()
        else:
            assert len(row["peak"]) == 2 and all(0 <= v < 64 for v in row["peak"])
        assert row["heatmap"].endswith(".png") and row["raw_heatmap"].endswith(".npy")
        assert "NOT clinically valid" in row["model_note"]
    assert lines[2]["error"] == "unreadable" and lines[2]["message"]
    assert len(list(heat.iterdir())) == 4


def test_predict_table_says_phantom_trained(images, tiny_model_path, capsys):
    assert main(["predict", images[0], "--model", str(tiny_model_path)]) == 0
    assert "NOT clinically valid" in capsys.readouterr().out


def test_missing_model_is_one_clean_line(images, tmp_path, capsys):
    assert main(["predict", images[0], "--model", str(tmp_path / "none.keras")]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_row_steps_that_do_not_fit_fail_before_reading_data(tmp_path, capsys):
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.keras")]  # no images
    assert main([*args, "--row-steps", "3"]) == 1
    err = capsys.readouterr().err
    assert "--row-steps" in err and "choose one of 1, 2, 4, 8, 16, 32, 64" in err


def test_registration_does_not_import_tensorflow():
    code = "import sys, hemoscan.cli as c; c.build_parser(); assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


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
            ]
        )
        == 0
    )
    assert model.is_file() and model.with_name("m.metrics.json").is_file()
    assert main(["evaluate", "--data", str(data), "--model", str(model), "--json"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert {"roc_auc", "classification_report", "confusion_matrix"} <= metrics.keys()
    assert "pointing_game" in metrics and "Grad-CAM pointing game" in out
