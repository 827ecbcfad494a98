"""Helper processes that decode pixel data: an abort, a kill or a hang costs one image."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import asdict, replace

import numpy as np
import pytest

from hybrid_model import errors, isolated_decoder
from hybrid_model.decoders import decode_pixels
from hybrid_model.dicom_checks import pixel_module
from hybrid_model.isolated_decoder import DecoderCrashed, DecoderFailed, HelperPool
from hybrid_model.preprocess import DecodeOptions, decode_image

from .conftest import dicom_bytes, j2k_ct, pydicom_file, read_dicom, run_python

# Decoding tests on ramps, zeros and CT_small (a spine slice): not heads, so the
# out-of-scope gate is off (tests/unit/hybrid/test_scope.py tests the gate).
NO_GATE = DecodeOptions(head_gate=False)

# The real helper, except that it aborts, hangs or prints to stdout on a marker in the payload.
FAULTY_HELPER = """
import os, sys, time
import hybrid_model.decoders as decoders
real = decoders.decode_with_plugins
def faulty(module, pixel_data, plugins):
    if b"ABORT-ME" in pixel_data:
        os.abort()
    if b"HANG-ME" in pixel_data:
        time.sleep(600)
    if b"NOISE-ME" in pixel_data:
        print("noise on stdout", flush=True)
        os.write(1, b"more noise from C")
    return real(module, pixel_data, plugins)
decoders.decode_with_plugins = faulty
from hybrid_model.decoder_helper import main
sys.exit(main())
"""
FAULTY = [sys.executable, "-c", FAULTY_HELPER]


@pytest.fixture(scope="module")
def j2k():
    """(PixelModule dict, Pixel Data, stored values) of CT_small as JPEG 2000."""
    ds = read_dicom(j2k_ct())
    module = pixel_module(ds, "ct.dcm")
    expected = read_dicom(pydicom_file("CT_small.dcm")).pixel_array
    return module, bytes(ds.PixelData), expected


def _marked_j2k(marker: bytes) -> bytes:
    """CT_small as JPEG 2000 with ``marker`` after the end of the codestream (checks pass)."""
    from pydicom.encaps import encapsulate, generate_fragments

    ds = read_dicom(j2k_ct())
    codestream = b"".join(list(generate_fragments(ds.PixelData))[1:]) + marker
    ds.PixelData = encapsulate([codestream + b"\0" * (len(codestream) % 2)])
    return dicom_bytes(ds)


def _native(marker: bytes = b"") -> tuple[dict, bytes]:
    module = {
        "transfer_syntax": "1.2.840.10008.1.2.1",
        "rows": 4,
        "columns": 4,
        "bits_allocated": 16,
        "bits_stored": 16,
        "high_bit": 15,
        "pixel_representation": 1,
        "photometric": "MONOCHROME2",
    }
    return module, (marker + bytes(32))[:32]


def _gone(pid: int, within_s: float = 15.0) -> bool:
    """The process exited (or is a zombie nobody reaped yet)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_helper_decodes_like_the_in_process_plugin(helper_pools, j2k):
    module, pixel_data, expected = j2k
    pool = HelperPool(size=1)
    helper_pools.append(pool)
    out = pool.decode(asdict(module), pixel_data, ["pylibjpeg"])
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, decode_pixels(module, pixel_data, "pylibjpeg"))
    assert out.flags.writeable


def test_real_gdcm_abort_costs_one_image(helper_pools, j2k):
    """The header checks bypassed: GDCM aborts on RGB + 1 sample, inside the helper only."""
    pytest.importorskip("gdcm")
    module, pixel_data, expected = j2k
    pool = HelperPool(size=1)
    helper_pools.append(pool)
    with pytest.raises(DecoderCrashed, match="SIGABRT"):
        pool.decode(asdict(replace(module, photometric="RGB")), pixel_data, ["gdcm"])
    np.testing.assert_array_equal(pool.decode(asdict(module), pixel_data, ["gdcm"]), expected)
    assert pool.started == 2 and len(pool.pids()) == 1


def test_aborting_helper_through_decode_image(helper_pools):
    isolated_decoder.configure_default_pool(command=FAULTY)
    options = DecodeOptions(isolate="compressed", head_gate=False)  # CT_small: a spine slice
    with pytest.raises(errors.UnreadableImage, match=r"crashed on this file \(SIGABRT\)"):
        decode_image(_marked_j2k(b"ABORT-ME"), "bad.dcm", options=options)
    good = decode_image(j2k_ct(), "good.dcm", size=None, options=options)
    assert good.native_shape == (128, 128)
    assert isolated_decoder.default_pool().started == 2


def test_helper_killed_while_idle_is_replaced(helper_pools):
    pool = HelperPool(size=1)
    helper_pools.append(pool)
    module, payload = _native()
    pool.decode(module, payload, [""])
    (helper,) = pool._helpers
    pid = helper.pid
    os.kill(pid, signal.SIGKILL)
    # A killed process is reaped only once all its threads are gone; wait for that.
    assert helper.proc.wait(timeout=15) == -signal.SIGKILL
    assert pool.decode(module, payload, [""]).shape == (4, 4)
    assert pool.pids() != [pid] and pool.started == 2


def test_hung_helper_is_killed_at_the_timeout(helper_pools):
    pool = HelperPool(size=1, timeout_s=1.0, command=FAULTY)
    helper_pools.append(pool)
    module, payload = _native()
    pool.decode(module, payload, [""])
    (pid,) = pool.pids()
    start = time.monotonic()
    with pytest.raises(DecoderCrashed, match="timed out after 1 s"):
        pool.decode(module, _native(b"HANG-ME")[1], [""])
    assert time.monotonic() - start < 10 and _gone(pid, 5)
    assert pool.decode(module, payload, [""]).shape == (4, 4)


def test_helper_printing_to_stdout_does_not_garble_the_protocol(helper_pools):
    pool = HelperPool(size=1, command=FAULTY)
    helper_pools.append(pool)
    module, _ = _native()
    assert pool.decode(module, _native(b"NOISE-ME")[1], [""]).shape == (4, 4)
    assert pool.started == 1


def test_plugin_errors_come_back_as_decoder_failed(helper_pools):
    pool = HelperPool(size=1)
    helper_pools.append(pool)
    module, _ = _native()
    with pytest.raises(DecoderFailed, match="native: "):
        pool.decode(module, b"\0" * 8, [""])  # too short for 4x4x16 bits
    assert pool.started == 1  # the helper survived its plugin's error


def test_eight_threads_share_two_helpers(helper_pools, j2k) -> None:
    module, pixel_data, expected = j2k
    pool = HelperPool(size=2)
    helper_pools.append(pool)
    results: list[bool] = []

    def work() -> None:
        for _ in range(4):
            out = pool.decode(asdict(module), pixel_data, ["pylibjpeg"])
            results.append(bool(np.array_equal(out, expected)))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 32 and all(results)
    assert pool.started <= 2


def test_helpers_exit_when_their_parent_dies():
    code = """
import os, sys
from hybrid_model.isolated_decoder import HelperPool
module = dict(transfer_syntax="1.2.840.10008.1.2.1", rows=1, columns=1, bits_allocated=16,
              bits_stored=16, high_bit=15, pixel_representation=0, photometric="MONOCHROME2")
pool = HelperPool(size=2)
pool.decode(module, b"\\0\\0", [""])
print(pool.pids()[0], flush=True)
os.kill(os.getpid(), 9)
"""
    result = run_python(code)
    assert result.returncode == -signal.SIGKILL
    assert _gone(int(result.stdout.split()[0]))


def test_reset_after_fork_lets_go_of_the_parents_helpers(helper_pools):
    module, payload = _native()
    old = isolated_decoder.default_pool()
    old.decode(module, payload, [""])
    (helper,) = old._helpers
    isolated_decoder.reset_after_fork()  # what a forked child runs
    assert isolated_decoder.default_pool() is not old and old.pids() == []
    # This process held the helper's only stdin: pointed at /dev/null, the helper sees EOF.
    assert helper.proc.wait(timeout=15) == 0


def test_forked_child_starts_its_own_helpers():
    code = """
import os
from hybrid_model.isolated_decoder import default_pool
module = dict(transfer_syntax="1.2.840.10008.1.2.1", rows=1, columns=1, bits_allocated=16,
              bits_stored=16, high_bit=15, pixel_representation=0, photometric="MONOCHROME2")
default_pool().decode(module, b"\\0\\0", [""])
parent_helper = default_pool().pids()
child = os.fork()
if child == 0:
    default_pool().decode(module, b"\\0\\0", [""])
    os._exit(0 if default_pool().pids() != parent_helper else 3)
_, status = os.waitpid(child, 0)
default_pool().decode(module, b"\\0\\0", [""])
assert default_pool().pids() == parent_helper, "the parent's helper was disturbed"
print(os.waitstatus_to_exitcode(status))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-800:]
    assert result.stdout.split() == ["0"]


class _RecordingPool:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def decode(self, module, payload, plugins):
        self.calls.append(list(plugins))
        return decode_pixels(
            pixel_module(read_dicom(j2k_ct()), "x"), payload, plugins[0] if plugins else ""
        )


def test_isolate_modes_route_as_documented(monkeypatch):
    import hybrid_model.decoders as decoders

    pool = _RecordingPool()
    monkeypatch.setattr(isolated_decoder, "default_pool", lambda: pool)
    data = j2k_ct()
    for isolate in ("gdcm", "off"):
        decode_image(data, "a.dcm", options=DecodeOptions(isolate=isolate, head_gate=False))
    assert pool.calls == []  # pylibjpeg decoded it in-process
    decode_image(data, "a.dcm", options=DecodeOptions(isolate="compressed", head_gate=False))
    assert pool.calls[-1][0] == "pylibjpeg"
    monkeypatch.setattr(decoders, "available_plugins", lambda uid: ())
    monkeypatch.setattr(decoders, "gdcm_available", lambda: True)
    pool.calls.clear()
    with pytest.raises(errors.UnsupportedImage):
        decode_image(data, "a.dcm", options=DecodeOptions(isolate="off", head_gate=False))
    assert pool.calls == []


def test_gdcm_in_a_helper_when_no_in_process_plugin(monkeypatch, helper_pools):
    pytest.importorskip("gdcm")
    import hybrid_model.decoders as decoders

    monkeypatch.setattr(decoders, "available_plugins", lambda uid: ())
    out = decode_image(j2k_ct(), "a.dcm", size=None, options=NO_GATE)
    reference = decode_image(pydicom_file("CT_small.dcm"), "a.dcm", size=None, options=NO_GATE)
    np.testing.assert_allclose(out.pixels, reference.pixels)
    assert isolated_decoder.default_pool().started == 1


def test_every_decoder_failing_lists_each():
    pytest.importorskip("gdcm")
    # pydicom's known-bad JPEG Extended file: libjpeg rejects a marker, GDCM the 12-bit precision.
    with pytest.raises(errors.UnreadableImage) as info:
        decode_image(
            pydicom_file("JPEG-lossy.dcm"), "l.dcm", options=DecodeOptions(allow_non_ct=True)
        )
    assert "pylibjpeg: RuntimeError" in str(info.value) and "gdcm: RuntimeError" in str(info.value)
