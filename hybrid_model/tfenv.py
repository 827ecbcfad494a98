"""Load TensorFlow without its C++ start-up chatter.

Importing TensorFlow and probing for GPUs prints lines such as ``I0000 ... oneDNN custom
operations are on``, ``Could not find cuda drivers`` and ``E0000 ... failed call to cuInit:
INTERNAL: CUDA error`` straight to file descriptor 2, before TensorFlow reads
``TF_CPP_MIN_LOG_LEVEL`` (absl: "All log messages before absl::InitializeLog() is called are
written to STDERR"). On a CPU machine that reads like a broken install. ``load_tensorflow``
imports TensorFlow and runs the GPU probe once, with descriptor 2 sent to a temporary file,
then writes back every line that is not such a log line (a real error still shows).

The usual variable turns them back on: with ``TF_CPP_MIN_LOG_LEVEL`` set to 0 or 1, nothing
is filtered.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from typing import Any

# absl's line format: severity letter, MMDD, time, thread id, file:line] message.
_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR|[IWE]\d{4} \d+:\d+:\d+\.\d+\s+\d+ \S+:\d+\] .*)$"
)
_lock = threading.Lock()
_loaded: list[Any] = []


def wants_native_logs() -> bool:
    """True when the user asked for TensorFlow's logs (``TF_CPP_MIN_LOG_LEVEL`` 0 or 1)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1")


def drop_log_lines(text: bytes) -> bytes:
    """``text`` without TensorFlow's native log lines (every other line kept, in order)."""
    kept = [line for line in text.splitlines(keepends=True) if not _LOG_LINE.match(line.rstrip())]
    return b"".join(kept)


def load_tensorflow() -> Any:
    """``import tensorflow`` and the GPU probe, quietly (once per process); returns the module."""
    with _lock:
        if _loaded:
            return _loaded[0]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # what TensorFlow logs after start-up
        if wants_native_logs():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        else:
            tf = _quietly()
        _loaded.append(tf)
        return tf


def _quietly() -> Any:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            # Probing for GPUs is what calls cuInit; done here, its error line is caught too.
            tf.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = drop_log_lines(captured.read())
            if rest:
                os.write(2, rest)
    return tf
