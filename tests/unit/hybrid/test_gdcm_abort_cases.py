"""The files that abort GDCM in-process give typed errors here, in every ``isolate`` mode.

Each decode runs in a child interpreter: should one abort, that test fails instead of pytest dying.
"""

from __future__ import annotations

import json
import signal

import pytest

from .conftest import gdcm_abort_cases, run_python

EXPECTED = {
    "j2k-rgb": "unsupported",
    "j2k-ybr-full": "unsupported",
    "jpeg-lossless-ba32": "unreadable",
}

DECODE_ALL = """
import json, sys
from hybrid_model.errors import ImageError
from hybrid_model.preprocess import DecodeOptions, decode_image
out = {}
for path in sys.argv[2:]:
    try:
        decode_image(open(path, "rb").read(), path, options=DecodeOptions(isolate=sys.argv[1]))
        out[path] = ["ok", ""]
    except ImageError as exc:
        out[path] = [exc.reason, str(exc)]
print(json.dumps(out))
"""

GDCM_IN_PROCESS = """
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
pydicom.pixels.pixel_array(ds, decoding_plugin="gdcm")
"""


@pytest.fixture(scope="module")
def abort_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abort")
    files = {}
    for case, data in gdcm_abort_cases(tmp).items():
        files[case] = tmp / f"{case}.dcm"
        files[case].write_bytes(data)
    return files


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_the_case_really_aborts_gdcm_in_process(abort_files, case):
    """Guards the fixtures: they must be the abort class the checks are for."""
    result = run_python(GDCM_IN_PROCESS, str(abort_files[case]))
    # A python-gdcm that no longer aborts on this file makes the fixture useless: fail, so the
    # fixture is replaced by a file that still shows the abort class, rather than skip quietly.
    assert result.returncode == -signal.SIGABRT, (
        f"GDCM exited {result.returncode} on {case}, not SIGABRT: {result.stderr[-500:]}"
    )


@pytest.mark.parametrize("isolate", ["gdcm", "compressed", "off"])
def test_abort_cases_are_typed_errors(abort_files, isolate):
    paths = [str(abort_files[case]) for case in sorted(EXPECTED)]
    result = run_python(DECODE_ALL, isolate, *paths)
    assert result.returncode == 0, f"child died ({result.returncode}): {result.stderr[-800:]}"
    outcomes = json.loads(result.stdout)
    for case, reason in EXPECTED.items():
        got, message = outcomes[str(abort_files[case])]
        assert got == reason, (case, message)
    assert "not greyscale CT" in outcomes[str(abort_files["j2k-rgb"])][1]
    assert "BitsAllocated 32" in outcomes[str(abort_files["jpeg-lossless-ba32"])][1]
