"""The series stage: a GRU over slices in z order beats max-of-slices where evidence spreads
over neighbouring slices, and train-series / evaluate-series run through the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_model.series import build_series_set, compare, fit_series_model, series_order

pytestmark = pytest.mark.slow


def _synthetic(n_series: int, seed: int):
    """Slices whose logits carry weak evidence (+0.9 in noise of 1) on 4 to 6 consecutive
    slices of a positive series: one slice alone says little, a run of them says a lot."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    labels: list[int] = []
    logits: list[float] = []
    emb: list[np.ndarray] = []
    order: dict[str, list[tuple[float, int]]] = {}
    for s in range(n_series):
        n = int(rng.integers(18, 26))
        lab = np.zeros(n, int)
        if s % 2:
            start = int(rng.integers(0, n - 6))
            lab[start : start + int(rng.integers(4, 7))] = 1
        z = np.arange(n) * 5.0 + rng.uniform(-50, 50)
        perm = rng.permutation(n)  # files in any order: z decides
        members = []
        for k in perm:
            members.append((float(z[k]), len(ids)))
            ids.append(f"s{s}_{k}")
            labels.append(lab[k])
            logits.append(rng.normal(0.0, 1.0) + 0.9 * lab[k])
            emb.append(rng.normal(0.0, 1.0, 4))
        order[f"s{s}"] = sorted(members)
    return build_series_set(order, ids, np.array(labels), np.array(logits, np.float32),
                            np.array(emb, np.float32))  # fmt: skip


def test_the_series_stage_beats_max_of_slices_when_evidence_spreads_along_z():
    train, val, test = _synthetic(300, 1), _synthetic(80, 2), _synthetic(200, 3)
    n = int(train.mask[0].sum())
    np.testing.assert_allclose(train.features[0, 1:n, -2], 1.0)  # 5 mm steps, in z order
    model, history = fit_series_model(train, val, epochs=40, patience=8, seed=0, show=False)
    figures = compare(model, test, threshold=0.5)
    base, stage = figures["max of slices"], figures["series stage"]
    assert stage["series_roc_auc"] > base["series_roc_auc"] + 0.03, figures
    assert stage["slice_roc_auc"] > base["slice_roc_auc"], figures
    assert history and all(np.isfinite(h["loss"]) for h in history)


def test_phantom_series_are_ordered_by_z_from_slices_csv(tmp_path):
    from hybrid_model.synth.write import generate_series

    generate_series(tmp_path, 2, seed=5, size=64, workers=1)
    import csv

    with open(tmp_path / "slices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["id"] for r in rows][::-1]  # reversed: order must come from z
    order = series_order(tmp_path, ids, [tmp_path / r["file"] for r in rows][::-1])
    assert set(order) == {"s00000", "s00001"}
    for members in order.values():
        z = [m[0] for m in members]
        assert z == sorted(z)
        instances = [int(ids[i].rsplit("_i", 1)[1]) for _, i in members]
        assert instances == sorted(instances)


def test_dicom_headers_give_the_series_when_there_is_no_table(tmp_path):
    import shutil

    from hybrid_model.synth.write import generate_series

    generate_series(tmp_path / "src", 2, seed=6, size=64, workers=1)
    files = sorted((tmp_path / "src").glob("s*/*.dcm"))
    flat = tmp_path / "flat"
    flat.mkdir()
    for k, f in enumerate(files):  # a flat folder of shuffled names, as RSNA's
        shutil.copy(f, flat / f"ID_{(k * 7919) % 1000:03d}{k}.dcm")
    copied = sorted(flat.glob("*.dcm"))
    order = series_order(flat, [p.stem for p in copied], copied)
    assert len(order) == 2 and not any("." in name for name in order)  # digests, not UIDs
    assert sum(len(m) for m in order.values()) == len(files)
    for members in order.values():
        z = [m[0] for m in members]
        assert z == sorted(z) and len(set(z)) == len(z)


def test_train_series_and_evaluate_series_through_the_cli(tmp_path, capsys):
    from hemoscan.cli import main
    from hybrid_model.io import load_model, save_model
    from hybrid_model.network import build_model
    from hybrid_model.synth.write import generate_series

    slice_model = build_model((32, 32, 3), filters=(4, 8, 16))
    save_model(slice_model, tmp_path / "slice.keras", {"input_size": 32})
    generate_series(tmp_path / "series", 10, seed=8, size=64, workers=1)
    out = tmp_path / "stage.keras"
    assert main(["train-series", "--data", str(tmp_path / "series"), "--out", str(out),
                 "--model", str(tmp_path / "slice.keras"), "--epochs", "2",
                 "--val-split", "0.3"]) == 0  # fmt: skip
    stage = load_model(out)
    assert stage.metadata["kind"] == "series_stage" and stage.metadata["phantom_trained"]
    assert main(["evaluate-series", "--data", str(tmp_path / "series"), "--series-model",
                 str(out), "--model", str(tmp_path / "slice.keras")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "max of slices" in text and "series stage" in text
