"""Print the pip requirements of an image, read from pyproject.toml (one source of truth).

    python deploy/requirements.py --gpu    the worker: every dependency, TensorFlow with CUDA
    python deploy/requirements.py --slim   producer, CLI, Flower: everything but TensorFlow/Keras

The images install these first (a cached layer that changes only with pyproject.toml), then
the project itself with ``pip install --no-deps .``. The slim list drops the packages that
only the model itself imports (TensorFlow, Keras): ``hemoscan --help``, ``scan``, ``status``,
``db`` and ``flower`` never import them (tests/deploy/test_flower_and_images.py checks it).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Distribution names (normalised) that only the model code imports (hybrid_model.network,
# io, gradcam: all imported lazily). Image decoding (OpenCV, pydicom) stays: Flower and the
# producer load the Celery app, whose `include` imports workers.tasks -> workers.pipeline ->
# hybrid_model.preprocess at module level.
MODEL_ONLY = {"tensorflow", "keras"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(kind: str) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    deps: list[str] = list(project["dependencies"])
    if kind == "gpu":
        # tensorflow[and-cuda] replaces the plain tensorflow requirement.
        gpu = project["optional-dependencies"]["gpu"]
        gpu_names = {_name(r) for r in gpu}
        return [r for r in deps if _name(r) not in gpu_names] + gpu
    if kind == "slim":
        return [r for r in deps if _name(r) not in MODEL_ONLY]
    raise SystemExit(f"unknown image kind {kind!r}: use --gpu or --slim")


if __name__ == "__main__":
    kind = sys.argv[1].lstrip("-") if len(sys.argv) > 1 else ""
    print("\n".join(requirements(kind)))
