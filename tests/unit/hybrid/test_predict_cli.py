"""`hemoscan predict` (and `train`'s argument checks) through hemoscan.cli.main, on tiny models
and data. Training itself is tested in tests/model/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hemoscan.cli import main
from hybrid_model.phantoms import generate
from hybrid_model.predict import expand_paths


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
    assert code == 0 and len(lines) == 3  # one unreadable file: reported, the others scored
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


def test_predict_exits_1_only_when_nothing_was_scored(images, tiny_model_path, tmp_path, capsys):
    bad = images[2]
    assert main(["predict", bad, bad, "--model", str(tiny_model_path), "--json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["error"] for r in rows] == ["unreadable", "unreadable"]
    (tmp_path / "README.txt").write_text("no images here\n")
    assert main(["predict", str(tmp_path), "--model", str(tiny_model_path), "--json"]) == 1
    assert "no image files found" in capsys.readouterr().err


def test_walk_decides_by_content(images, tmp_path):
    dcm = Path(images[0]).read_bytes()
    png = Path(images[1]).read_bytes()
    root = tmp_path / "masks" / "study"  # a masks/ ABOVE the walked folder does not count
    files = {
        "IM00001": dcm,  # PACS export: no suffix, preamble + DICM
        "IM00002": dcm[132:],  # no suffix, no preamble: starts with the (0002,0000) element
        "a.dcm": dcm,
        "sub/SLICE.PNG": png,
        "sub/png-without-suffix": png,
        "README.txt": b"scanned on 2026-12-01\n",
        "labels.csv": b"id,hemorrhage\na,1\n",
        ".DS_Store": bytes(range(256)),
        "notes": b"DICOM is mentioned here but this is text\n",
        "masks/a.png": png,  # lesion masks, not slices
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    found = [str(p.relative_to(root)) for p in expand_paths([root])]
    assert found == ["IM00001", "IM00002", "a.dcm", "sub/SLICE.PNG", "sub/png-without-suffix"]
    assert expand_paths([root / "README.txt"]) == [root / "README.txt"]  # files as given


def test_every_failure_is_one_row_with_a_reason(images, tiny_model_path, tmp_path, monkeypatch):
    """OSError, MemoryError, NaN pixels and a decoder's own exception: rows, not crashes."""
    import hybrid_model.predict as predict

    real = predict.decode_native
    failures = {
        "memory.dcm": MemoryError(),
        "odd.dcm": KeyError("(0028,0010)"),
        "runtime.dcm": RuntimeError("decoder says no"),
    }

    def fake(data, name, **kwargs):
        if name in failures:
            raise failures[name]
        if name == "nan.dcm":
            return np.full((8, 8, 3), np.nan, np.float32)
        return real(data, name, **kwargs)

    monkeypatch.setattr(predict, "decode_native", fake)
    for name in (*failures, "nan.dcm"):
        (tmp_path / name).write_bytes(Path(images[0]).read_bytes())
    paths = [images[0], *(tmp_path / n for n in (*failures, "nan.dcm")), tmp_path / "missing.dcm"]
    rows = list(predict.predict_paths(paths, tiny_model_path))
    assert [r["image"] for r in rows] == [str(p) for p in paths]
    assert 0 <= rows[0]["probability"] <= 1
    for row, kind in zip(rows[1:4], ("MemoryError", "KeyError", "RuntimeError"), strict=True):
        assert row["error"] == "unreadable" and kind in row["message"]
    assert rows[4]["error"] == "unreadable" and "not finite" in rows[4]["message"]
    assert rows[5]["error"] == "unreadable" and "No such file" in rows[5]["message"]


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


def test_a_chest_gets_reason_not_head_unless_the_gate_is_off(
    images, tiny_model_path, tmp_path, capsys, monkeypatch
):
    from hemoscan.settings import get_settings
    from tests.utils.nonhead import chest, dicom_bytes

    hu, spacing = chest(np.random.default_rng(0), 256)
    scan = tmp_path / "chest.dcm"
    scan.write_bytes(dicom_bytes(hu, spacing))
    assert main(["predict", images[0], str(scan), "--model", str(tiny_model_path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "probability" in rows[0] and rows[1]["error"] == "not_head"
    assert "not a head CT slice" in rows[1]["message"] and "probability" not in rows[1]
    assert main(["predict", str(scan), "--model", str(tiny_model_path)]) == 1
    assert "not_head" in capsys.readouterr().out  # the table's label column (cells wrap)
    monkeypatch.setenv("HEMOSCAN_HEAD_GATE", "false")
    get_settings.cache_clear()
    try:
        assert main(["predict", str(scan), "--model", str(tiny_model_path), "--json"]) == 0
        assert 0 <= json.loads(capsys.readouterr().out)["probability"] <= 1
    finally:
        get_settings.cache_clear()
