"""model-bench: figures for each batch size, the ratio from alternating calls."""

from __future__ import annotations

from hybrid_model.bench import run_bench


def test_bench_reports_rates_and_ratio_per_batch(tiny_model_path):
    result = run_bench(tiny_model_path, batches=(1, 2), seconds=0.2, show=False)
    assert [row["batch"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["forward"] > 0 and row["gradcam"] > 0
        assert 0 < row["ratio"] < 10
        assert row["calls"] >= 3
    assert result["device"] == "CPU" or result["device"].startswith("GPU")
