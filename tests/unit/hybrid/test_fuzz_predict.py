"""`hemoscan predict CORPUS --json` answers every file of the fuzz corpus, in bounded memory.

The CLI runs as a child process with python-gdcm installed as it is, so a decoder that aborts
shows up here as a negative return code instead of taking pytest down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybrid_model.errors import REASONS
from tests.utils.fuzz import generate_corpus

PEAK_RSS_LIMIT = int(2.5 * 1024**3)
REPO = Path(__file__).resolve().parents[3]


def _no_nan(token: str) -> float:
    raise ValueError(f"not JSON: {token}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    return root, generate_corpus(root)


@dataclass(frozen=True)
class Run:
    code: int
    peak_rss: int  # bytes
    lines: list[str]
    stderr_tail: str


@pytest.fixture(scope="module")
def predicted(corpus, tiny_model_path) -> Run:
    """The CLI run on the whole corpus, with the peak RSS of that process (and its children)."""
    root, _ = corpus
    cmd = [sys.executable, "-m", "hemoscan.cli", "predict", str(root), "--json"]
    cmd += ["--model", str(tiny_model_path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not pytest's others
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = Run(
            proc.returncode,
            usage.ru_maxrss * 1024,  # kilobytes on Linux
            out.read().decode().splitlines(),
            "\n".join(err.read().decode(errors="replace").splitlines()[-3:]),
        )
    print(
        f"hemoscan predict: {len(run.lines)} rows, rc {run.code}, peak RSS {run.peak_rss >> 20} MiB"
    )
    return run


def _suspects(root: Path, lines: list[str]) -> list[str]:
    """The files of the batch being decoded when the process died (16 per model call)."""
    from hybrid_model.predict import expand_paths

    order = [str(p.relative_to(root)) for p in expand_paths([root])]
    return order[len(lines) : len(lines) + 16]


@pytest.mark.slow
def test_predict_answers_every_corpus_file(corpus, predicted):
    root, files = corpus
    assert predicted.code >= 0, (
        f"hemoscan predict was killed by signal {-predicted.code} while decoding one of "
        f"{_suspects(root, predicted.lines)}: {predicted.stderr_tail}"
    )
    assert predicted.code == 0, predicted.stderr_tail
    rows = [json.loads(line, parse_constant=_no_nan) for line in predicted.lines]
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in files)
    for row in rows:
        if "error" in row:
            assert row["error"] in REASONS and row["message"], row
            assert "probability" not in row, row
        else:
            assert 0.0 <= row["probability"] <= 1.0, row
    assert any("error" not in r for r in rows) and any("error" in r for r in rows)


@pytest.mark.slow
def test_predict_memory_is_bounded(predicted):
    assert predicted.peak_rss < PEAK_RSS_LIMIT, f"peak RSS {predicted.peak_rss >> 20} MiB"
