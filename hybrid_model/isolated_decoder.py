"""Decode pixel data in long-lived helper processes, so that a decoder abort costs one image.

GDCM raises C++ exceptions through C code on some inconsistent files and the whole process dies
(SIGABRT). Here it runs in a helper (``decoder_helper``), started with ``subprocess`` because
Celery prefork children are daemonic and ``multiprocessing`` cannot start children there.

``HelperPool``: up to ``size`` helpers, started on first use and reused, thread-safe (a worker
decodes from several I/O threads). A helper that dies on a request (abort, segfault), or is
still busy at the per-call timeout (it is then killed), is dropped: that image fails with
``DecoderCrashed`` and the next request gets a new helper. Helpers exit at stdin EOF, so they
never outlive this process.

After ``os.fork`` the child must not talk to its parent's helpers: ``reset_after_fork`` (also
registered with ``os.register_at_fork``) forgets them and points the inherited pipe descriptors
at /dev/null, so a parent's helper still sees EOF when the parent dies. Measured cost per image:
docs/decoding.md.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_model.decoder_helper import ReadExact, read_message, write_message

HELPER_MODULE = "hybrid_model.decoder_helper"
DEFAULT_HELPERS = 2
DEFAULT_TIMEOUT_S = 30.0


class DecoderCrashed(Exception):
    """The helper died or hung on this request; the message says how (e.g. 'SIGABRT')."""


class DecoderFailed(Exception):
    """The helper answered with an error: every plugin it tried raised."""


class _NotDelivered(Exception):
    """The helper was gone before it read the request (safe to retry on a new one)."""


class _TimedOut(Exception):
    pass


def _helper_env() -> dict[str, str]:
    # The helper imports hybrid_model from wherever this process did, installed or not.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    # One frame at a time: no idle BLAS/OpenMP thread pools in every helper.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


class _Helper:
    def __init__(self, command: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_helper_env()
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _reader(self, deadline: float) -> ReadExact:
        """``read_exact`` on stdout's descriptor that raises ``_TimedOut`` at the deadline."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select.select: a worker's descriptors may be above 1024
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

        def read_exact(size: int) -> bytearray | None:
            buf = bytearray(size)
            view, pos = memoryview(buf), 0
            while pos < size:
                left_ms = math.ceil((deadline - time.monotonic()) * 1000)
                if left_ms <= 0 or not poller.poll(left_ms):
                    raise _TimedOut
                got = os.readv(fd, [view[pos:]])
                if not got:
                    return None
                pos += got
            return buf

        return read_exact

    def request(
        self, header: dict[str, Any], payload: bytes, timeout_s: float
    ) -> tuple[dict[str, Any], bytearray]:
        assert self.proc.stdin is not None
        deadline = time.monotonic() + timeout_s
        try:
            # An idle helper reads a whole request before decoding, so this does not block long.
            write_message(self.proc.stdin, header, payload)
        except OSError as exc:  # BrokenPipeError: it died before reading the request
            raise _NotDelivered(str(exc)) from exc
        try:
            reply = read_message(self._reader(deadline))
        except _TimedOut:
            self._kill()
            raise DecoderCrashed(f"timed out after {timeout_s:g} s") from None
        except ValueError as exc:  # garbage on stdout: this helper cannot be trusted
            self._kill()
            raise DecoderCrashed(f"garbled reply: {exc}") from exc
        if reply is None:
            raise DecoderCrashed(self._death())
        return reply

    def _kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed stdout but still running: stop it
            self._kill()
            return "closed its output"
        return signal.Signals(-code).name if code < 0 else f"exit status {code}"

    def close(self) -> None:
        """Close its stdin (it exits at EOF); kill it if it does not within a few seconds."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._kill()


def _to_array(reply: dict[str, Any], data: bytearray) -> np.ndarray:
    if not reply.get("ok"):
        raise DecoderFailed(str(reply.get("error", "unknown error")))
    dtype = np.dtype(reply["dtype"])
    shape = tuple(int(n) for n in reply["shape"])
    if dtype.itemsize * int(np.prod(shape)) != len(data):
        raise DecoderFailed(f"reply of {len(data)} bytes does not hold {shape} {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)  # a bytearray: writable, no copy


class HelperPool:
    """Up to ``size`` helper processes, started on first use and reused; thread-safe.

    Args:
        size: helpers, and so concurrent decodes; other callers wait for a free one.
        timeout_s: per request; a helper still busy then is killed.
        command: the helper command line (tests pass one that aborts on demand).
    """

    def __init__(
        self,
        size: int = DEFAULT_HELPERS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        command: Sequence[str] | None = None,
    ) -> None:
        if size < 1 or not timeout_s > 0:
            raise ValueError(f"size must be >= 1 and timeout_s > 0, got {size}, {timeout_s}")
        self.size, self.timeout_s = size, timeout_s
        self.command = list(command) if command else [sys.executable, "-m", HELPER_MODULE]
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Helper] = []
        self._helpers: list[_Helper] = []
        self.started = 0  # helpers started over the pool's life (tests, metrics)

    def pids(self) -> list[int]:
        with self._lock:
            return [h.pid for h in self._helpers]

    def _take(self) -> _Helper:
        with self._lock:
            while self._idle:
                helper = self._idle.pop()
                if helper.alive():
                    return helper
                self._helpers.remove(helper)
                helper.close()  # died while idle (killed from outside): reap it
            helper = _Helper(self.command)
            self._helpers.append(helper)
            self.started += 1
            return helper

    def _drop(self, helper: _Helper) -> None:
        with self._lock:
            if helper in self._helpers:
                self._helpers.remove(helper)
        helper.close()

    def decode(self, module: dict[str, Any], payload: bytes, plugins: Sequence[str]) -> np.ndarray:
        """Decode in a helper. Raises DecoderCrashed (died/hung) or DecoderFailed (it raised)."""
        header = {"module": module, "plugins": list(plugins)}
        with self._slots:
            for attempt in (1, 2):
                helper = self._take()
                try:
                    reply, data = helper.request(header, payload, self.timeout_s)
                except _NotDelivered as exc:
                    self._drop(helper)
                    if attempt == 2:
                        raise DecoderCrashed(
                            f"helper died before reading the file ({exc})"
                        ) from exc
                    continue
                except BaseException:  # crashed, hung, or interrupted mid-message
                    self._drop(helper)
                    raise
                with self._lock:
                    self._idle.append(helper)
                return _to_array(reply, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Stop every helper (they also stop by themselves when this process exits)."""
        with self._lock:
            helpers, self._helpers, self._idle = self._helpers, [], []
        for helper in helpers:
            helper.close()

    def abandon(self) -> None:
        """In a forked child: drop the parent's helpers without talking to them."""
        null = os.open(os.devnull, os.O_RDWR)
        try:
            for helper in self._helpers:
                for stream in (helper.proc.stdin, helper.proc.stdout):
                    if stream is not None and not stream.closed:
                        os.dup2(null, stream.fileno())  # the pipe end is released here
        finally:
            os.close(null)
        _ORPHANS.extend(self._helpers)  # never collected: no waitpid on the parent's children
        self._helpers, self._idle = [], []


_pool: HelperPool | None = None
_pool_lock = threading.Lock()
_pool_config: dict[str, Any] = {}
_ORPHANS: list[_Helper] = []


def configure_default_pool(
    size: int = DEFAULT_HELPERS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    command: Sequence[str] | None = None,
) -> None:
    """Set the shared pool's size and timeout (the worker's settings); stops the current one."""
    global _pool
    HelperPool(size, timeout_s, command)  # validate before replacing anything
    with _pool_lock:
        old, _pool = _pool, None
        _pool_config.clear()
        _pool_config.update(size=size, timeout_s=timeout_s, command=command)
    if old is not None:
        old.close()


def default_pool() -> HelperPool:
    """The process-wide pool, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = HelperPool(**_pool_config)
        return _pool


def reset_after_fork() -> None:
    """Forget the parent's helpers in a forked child; the child starts its own on first use."""
    global _pool, _pool_lock
    _pool_lock = threading.Lock()  # another thread may have held the old one at fork time
    old, _pool = _pool, None
    if old is not None:
        old.abandon()


os.register_at_fork(after_in_child=reset_after_fork)
