"""Decode files with ``decode_native`` in a child process, so a decoder that aborts is data.

One child decodes file after file (its start-up, numpy + OpenCV + pydicom, costs more than most
decodes); when it dies (SIGABRT from a C++ ``terminate``, SIGSEGV) or stops answering, the file
it was on is recorded and a fresh child takes the next one. ``python -m tests.utils.fuzz DIR``
prints the table (docs/fuzzing.md).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# ok: finite pixels; nan: decoded, but NaN or infinity in the pixels (a NaN score downstream);
# error: an ImageError (detail: its reason); unexpected: any other exception (detail: its type);
# aborted: the child died (detail: signal and last stderr line); hung: no answer in time.
STATUSES = ("ok", "nan", "error", "unexpected", "aborted", "hung")
CHILD = (sys.executable, "-m", "tests.utils.abort_finder")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    """One file's fate: ``status`` is one of STATUSES."""

    path: str
    status: str
    detail: str


def _child() -> None:
    """Decode the paths read from stdin, one JSON line each on the original stdout."""
    import numpy as np

    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a C library printing to stdout must not corrupt the protocol
    from hybrid_model.errors import ImageError
    from hybrid_model.preprocess import decode_native

    for line in sys.stdin:
        path = Path(line.rstrip("\n"))
        try:
            finite = np.isfinite(decode_native(path.read_bytes(), path.name)).all()
            status, detail = ("ok" if finite else "nan"), ""
        except ImageError as exc:
            status, detail = "error", exc.reason
        except Exception as exc:  # the point: record what escapes, do not stop
            status, detail = "unexpected", type(exc).__name__
        proto.write(json.dumps({"status": status, "detail": detail}) + "\n")
        proto.flush()


class _Decoder:
    """A child decoding one file at a time, started with a memory limit."""

    def __init__(self, command: Sequence[str], memory_limit: int) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        limit = (memory_limit, memory_limit)
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=REPO,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, limit),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)

    def decode(self, path: Path, timeout_s: float) -> tuple[str, str] | None:
        """(status, detail); ('hung', ...) after ``timeout_s``; None when the child died."""
        try:
            self.stdin.write(f"{path}\n".encode())
            self.stdin.flush()
        except BrokenPipeError:
            return None
        if not self.selector.select(timeout_s):
            return "hung", f"no answer in {timeout_s:g} s (killed)"
        line = self.stdout.readline()
        if not line:
            return None
        reply = json.loads(line)
        return reply["status"], reply["detail"]

    def fate(self) -> tuple[str, str]:
        """After ``decode`` returned None: ('aborted', 'SIGABRT: last stderr line')."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its stdout but lives on
            return "hung", "stdout closed, process alive (killed)"
        self.stderr.seek(0)
        lines = [ln for ln in self.stderr.read().decode(errors="replace").splitlines() if ln]
        name = signal.Signals(-code).name if code < 0 else f"exit {code}"
        return "aborted", f"{name}: {lines[-1][:160]}" if lines else name

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.selector.close()
        self.stdin.close()
        self.stdout.close()
        self.stderr.close()


def find_aborts(
    files: Sequence[Path],
    *,
    timeout_s: float = 20.0,
    memory_limit: int = 4 << 30,
    command: Sequence[str] = CHILD,
) -> list[Outcome]:
    """Decode every file in a child process; one Outcome per file, in order.

    Args:
        files: the corpus.
        timeout_s: a file not answered within this is 'hung' (the child is killed).
        memory_limit: RLIMIT_AS of the child, so a hostile header cannot take the machine's
            memory; an allocation over it is a MemoryError (unexpected) or, in C++, an abort.
        command: the child (tests replace it); it answers one JSON line per path on stdin.
    """
    outcomes, decoder = list[Outcome](), None
    try:
        for path in files:
            decoder = decoder or _Decoder(command, memory_limit)
            answer = decoder.decode(path, timeout_s) or decoder.fate()
            if answer[0] in ("aborted", "hung"):
                decoder.close()
                decoder = None
            outcomes.append(Outcome(str(path), *answer))
    finally:
        if decoder:
            decoder.close()
    return outcomes


def _cells(group: Iterable[Outcome]) -> list[str]:
    """'n (detail count, ...)' per status; details are reasons, types or signal names."""
    by_status: dict[str, Counter[str]] = defaultdict(Counter)
    for o in group:
        by_status[o.status][o.detail.split(":")[0]] += 1
    cells = []
    for status in STATUSES:
        counts = by_status.get(status, Counter())
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k)
        total = sum(counts.values())
        cells.append(f"{total} ({shown})" if shown else str(total))
    return cells


def table(outcomes: Sequence[Outcome], key: Callable[[Outcome], str]) -> str:
    """A markdown table: one row per ``key`` (a family, mutation or base), one column a status."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[key(o)].append(o)
    head = "| group | files | " + " | ".join(STATUSES) + " |"
    lines = [head, "|---" * (len(STATUSES) + 2) + "|"]
    for name in sorted(groups):
        lines.append(f"| {name} | {len(groups[name])} | " + " | ".join(_cells(groups[name])) + " |")
    lines.append(f"| **all** | {len(outcomes)} | " + " | ".join(_cells(outcomes)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    _child()
