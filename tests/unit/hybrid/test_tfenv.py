"""TensorFlow's C++ start-up lines stay out of the output unless the user asks for them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from hybrid_model.tfenv import drop_log_lines

CHATTER = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796167569.723741   30433 port.cc:153] oneDNN custom operations are on.\n"
    b"E0000 00:00:1796167574.160854   30433 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error\n"
)


def test_only_native_log_lines_are_dropped():
    real = b"Traceback (most recent call last):\nValueError: a real problem\n"
    assert drop_log_lines(CHATTER + real + CHATTER) == real
    assert drop_log_lines(b"I0000 is not a log line without its fields\n") != b""


LOAD = "from hybrid_model.tfenv import load_tensorflow; load_tensorflow(); print('loaded')"


def _load(level: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    out = subprocess.run(
        [sys.executable, "-c", LOAD], capture_output=True, text=True, env=env, check=True
    )
    assert "loaded" in out.stdout
    return out.stderr


@pytest.mark.slow
def test_loading_tensorflow_prints_nothing_by_default_and_everything_on_request():
    assert _load(None) == ""
    # The usual variable turns TensorFlow's logs back on (these lines exist on every machine:
    # oneDNN's or CUDA's notices), so the quiet default above is the filter's doing.
    loud = _load("0")
    assert re.search(r"^[IWE]\d{4} ", loud, re.MULTILINE), loud
