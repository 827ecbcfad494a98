"""Forward-only vs forward+Grad-CAM throughput of the demo model at batch 1, 8, 32.

Usage: .venv/bin/python bench/model_bench.py [--model MODEL.keras] [--seconds 3]
(the same as ``hemoscan model-bench``).
"""

from __future__ import annotations

import argparse

from hybrid_model.bench import run_bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model .keras (default: the demo model)")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--seconds", default=3.0, type=float, help="time per measurement")
    args = parser.parse_args()
    run_bench(args.model, [int(b) for b in args.batches.split(",")], args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
