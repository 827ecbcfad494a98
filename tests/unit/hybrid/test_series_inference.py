"""The series stage at inference (``SeriesStage``, ``load_stage``): batched verdicts equal
one-by-one ones (padding is masked), max-of-slices when no stage fits the slice network."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_model.io import save_model
from hybrid_model.series import SeriesStage, build_series_model, load_stage, sequence_features

DIM = 6


def _series(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.normal(size=(n, DIM)), rng.normal(size=n) * 3, np.arange(n) * 5.0


@pytest.fixture(scope="module")
def stage():
    import keras

    keras.utils.set_random_seed(1)
    return build_series_model(DIM + 3, units=4)


def test_a_padded_batch_gives_each_series_its_own_verdict(stage):
    rng = np.random.default_rng(0)
    many = [_series(rng, n) for n in (3, 9, 1)]
    runner = SeriesStage(stage, threshold=0.5, min_slices=1)
    together = runner(many)
    for one, verdict in zip(many, together, strict=True):
        (alone,) = runner([one])
        np.testing.assert_allclose(verdict.slice_probabilities, alone.slice_probabilities,
                                   atol=1e-5)  # fmt: skip
        assert verdict.probability == pytest.approx(verdict.slice_probabilities.max())
        assert verdict.max_slice_probability == pytest.approx(1 / (1 + np.exp(-one[1].max())))
        assert verdict.method == "series_stage"


def test_the_compiled_call_gives_the_models_own_outputs_and_is_traced_once(stage):
    """The worker calls the stage compiled (an eager GRU dispatches every step from Python):
    the same refined probabilities as the Keras model called directly, for batches of any
    number of series and steps, with one trace."""
    rng = np.random.default_rng(3)
    runner = SeriesStage(stage, threshold=0.5, min_slices=1)
    for lengths in ((3, 9, 1), (40,), (2, 2, 2, 2, 17)):
        many = [_series(rng, n) for n in lengths]
        verdicts = runner(many)
        for (e, lg, z), verdict in zip(many, verdicts, strict=True):
            feats = sequence_features(np.asarray(e, np.float32), lg, z)[None]
            eager = np.asarray(stage(feats, training=False))[0, :, 0]
            np.testing.assert_allclose(verdict.slice_probabilities, 1 / (1 + np.exp(-eager)),
                                       atol=1e-5)  # fmt: skip
    assert runner._compiled is not None
    assert runner._compiled.experimental_get_tracing_count() == 1


def test_a_series_shorter_than_min_slices_gets_max_of_slices_at_the_slice_threshold(stage):
    """The stage was trained on whole series: its threshold is not for one slice or a few (it
    flagged no one-slice series of the held-out set). Those get max of slices at the slice
    threshold, said in their verdict; the others the stage's verdict, as if alone."""
    rng = np.random.default_rng(5)
    many = [_series(rng, n) for n in (1, 4, 5, 12)]
    verdicts = SeriesStage(stage, 0.98, slice_threshold=0.3, min_slices=5)(many)
    staged = SeriesStage(stage, 0.98, min_slices=1)(many)
    for (_, logits, _), v in zip(many[:2], verdicts[:2], strict=True):
        assert v.method == "max_of_slices" and v.threshold == pytest.approx(0.3)
        assert v.probability == pytest.approx(1 / (1 + np.exp(-logits.max())))
        np.testing.assert_allclose(v.slice_probabilities, 1 / (1 + np.exp(-logits)))
    for v, alone in zip(verdicts[2:], staged[2:], strict=True):
        assert v.method == "series_stage" and v.threshold == pytest.approx(0.98)
        np.testing.assert_allclose(v.slice_probabilities, alone.slice_probabilities, atol=1e-5)
    # The stage itself gives the short series other probabilities: the rule is what changed.
    assert not np.allclose(verdicts[0].slice_probabilities, staged[0].slice_probabilities)


def test_without_a_stage_the_verdict_is_max_of_slices():
    logits = np.array([-2.0, 3.0, 0.0])
    (v,) = SeriesStage(None, 0.7)([(np.zeros((3, DIM)), logits, np.full(3, np.nan))])
    assert v.method == "max_of_slices" and v.probability == pytest.approx(1 / (1 + np.exp(-3)))
    np.testing.assert_allclose(v.slice_probabilities, 1 / (1 + np.exp(-logits)))


def test_unknown_z_counts_as_the_reference_spacing():
    f = sequence_features(np.zeros((3, 2)), np.zeros(3), np.array([np.nan, np.nan, np.nan]))
    assert f[:, -2].tolist() == [1.0, 1.0, 1.0] and f[:, -1].tolist() == [1.0, 1.0, 1.0]


def test_load_stage_falls_back_when_the_stage_does_not_fit(stage, tmp_path):
    path = tmp_path / "stage.keras"
    save_model(stage, path, {"kind": "series_stage", "slice_model_version": "aaa",
                             "threshold": 0.8, "phantom_trained": True})  # fmt: skip
    assert load_stage(path, {"version": "aaa"}, 0.3).method == "series_stage"
    fitting = load_stage(path, {"version": "aaa"}, 0.3)
    assert fitting.threshold == pytest.approx(0.8) and fitting.slice_threshold == pytest.approx(0.3)
    other = load_stage(path, {"version": "bbb"}, 0.3)
    assert other.method == "max_of_slices" and other.threshold == pytest.approx(0.3)
    assert load_stage(tmp_path / "missing.keras", {"version": "aaa"}, 0.3).stage is None
    assert load_stage(None, {"version": "aaa"}, 0.3).stage is None


def test_compare_reads_short_series_as_the_pipeline_does(stage):
    """`evaluate-series` and `train-series` report the verdicts a scan would give: a series of
    fewer than ``min_slices`` slices is its max of slices against the slice threshold."""
    from hybrid_model.series import build_series_set, compare

    rng = np.random.default_rng(7)
    order, ids, labels, logits, emb = {}, [], [], [], []
    for s, (n, positive) in enumerate([(1, True), (1, False), (2, True), (20, True), (20, False)]):
        members = []
        for k in range(n):
            members.append((5.0 * k, len(ids)))
            ids.append(f"s{s}_{k}")
            labels.append(int(positive and k == 0))
            logits.append(2.0 if positive and k == 0 else -2.0)
            emb.append(rng.normal(size=DIM))
        order[f"s{s}"] = members
    data = build_series_set(order, ids, np.array(labels), np.array(logits, np.float32),
                            np.array(emb, np.float32))  # fmt: skip
    as_scanned = compare(stage, data, threshold=0.999, slice_threshold=0.5, min_slices=5)
    stage_only = compare(stage, data, threshold=0.999)
    assert as_scanned["short_series"] == 3 and "short_series" not in stage_only
    # The three short series: flagged by their slices (2 of 2 positives, 0 of 1 normal).
    short_sens = as_scanned["series stage"]["sensitivity"]
    assert short_sens >= 2 / 3 and as_scanned["series stage"]["specificity"] == 1.0
    assert stage_only["series stage"]["sensitivity"] <= 1 / 3  # nothing reaches 0.999 but noise
