"""The helper process of ``isolated_decoder``: ``python -m hybrid_model.decoder_helper``.

It reads requests on stdin, decodes each with the plugins named in it, answers on stdout, and
exits at stdin EOF, that is when its parent exits or dies. If a decoder aborts it, only this
process dies (the parent reports that one image as unreadable).

Protocol, both directions; one message is a header and a payload::

    uint32 BE header length | UTF-8 JSON header | uint64 BE payload length | payload

Request: ``{"module": PixelModule fields, "plugins": [...]}`` + the Pixel Data value.
Reply: ``{"ok": true, "dtype": "<i2", "shape": [rows, cols]}`` + the array bytes, or
``{"ok": false, "error": "gdcm: RuntimeError: ..."}`` + nothing.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from collections.abc import Callable
from typing import IO, Any

import numpy as np

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 32

ReadExact = Callable[[int], "bytearray | None"]


def write_message(stream: IO[bytes], header: dict[str, Any], payload: bytes | memoryview) -> None:
    head = json.dumps(header).encode()
    size = memoryview(payload).nbytes
    stream.write(struct.pack(">I", len(head)) + head + struct.pack(">Q", size))
    stream.write(payload)
    stream.flush()


def stream_reader(stream: IO[bytes]) -> ReadExact:
    """``read_exact(n)`` over a blocking binary stream: n bytes in one buffer, None at EOF."""

    def read_exact(size: int) -> bytearray | None:
        buf = bytearray(size)
        view, pos = memoryview(buf), 0
        while pos < size:
            got = stream.readinto(view[pos:])  # type: ignore[attr-defined]
            if not got:
                return None
            pos += got
        return buf

    return read_exact


def read_message(read_exact: ReadExact) -> tuple[dict[str, Any], bytearray] | None:
    """One message, or None at EOF (the other side exited). ValueError for a garbled stream."""
    raw = read_exact(4)
    if raw is None:
        return None
    (head_len,) = struct.unpack(">I", raw)
    if head_len > MAX_HEADER:
        raise ValueError(f"header of {head_len} bytes")
    head = read_exact(head_len)
    size_raw = read_exact(8) if head is not None else None
    if head is None or size_raw is None:
        return None
    (size,) = struct.unpack(">Q", size_raw)
    if size > MAX_PAYLOAD:
        raise ValueError(f"payload of {size} bytes")
    payload = read_exact(size)
    if payload is None:
        return None
    return json.loads(head), payload


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Decode each request with its plugins until stdin closes (0) or is garbled (2)."""
    from hybrid_model.decoders import PixelModule, PluginsFailed, decode_with_plugins

    read_exact = stream_reader(stdin)
    while True:
        try:
            message = read_message(read_exact)
        except ValueError:
            return 2
        if message is None:
            return 0
        header, payload = message
        try:
            module = PixelModule(**header["module"])
            arr = decode_with_plugins(module, bytes(payload), header["plugins"])
            arr = np.ascontiguousarray(arr)
        except Exception as exc:  # reported to the parent; the helper itself stays usable
            error = str(exc) if isinstance(exc, PluginsFailed) else f"{type(exc).__name__}: {exc}"
            write_message(stdout, {"ok": False, "error": error[:600]}, b"")
            continue
        reply = {"ok": True, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        write_message(stdout, reply, arr.reshape(-1).view(np.uint8).data)


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a C library prints goes to stderr, not into the protocol stream
    sys.stdout = sys.stderr
    return serve(sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    sys.exit(main())
