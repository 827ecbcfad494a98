"""The fuzz corpus generator (tests/utils/fuzz.py) and the abort finder (tests/utils/abort_finder.py)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from tests.utils.abort_finder import find_aborts, table
from tests.utils.fuzz import HEADER, family_of, generate_corpus

# A stand-in child: answers 'ok', aborts on a file name with 'abort', hangs on 'hang'.
FAKE_CHILD = (
    sys.executable,
    "-c",
    "import json, os, sys, time\n"
    "for line in sys.stdin:\n"
    "    name = os.path.basename(line)\n"
    "    if 'abort' in name: os.abort()\n"
    "    if 'hang' in name: time.sleep(60)\n"
    "    print(json.dumps({'status': 'ok', 'detail': ''}), flush=True)\n",
)


def _digest(files: list[Path], root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_corpus_is_deterministic_small_and_named_by_family(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    files = generate_corpus(first)
    assert _digest(files, first) == _digest(generate_corpus(second), second)
    assert 350 <= len(files) <= 600
    assert sum(p.stat().st_size for p in files) < 50 * 1024 * 1024
    families = {family_of(p) for p in files}
    for mutation in (*HEADER, "trunc", "flip-px", "flip-hdr", "no-preamble", "no-meta"):
        assert f"ct-{mutation}" in families and f"j2k-{mutation}" in families
    assert {"png16-ihdr-huge", "png8-crc-idat", "jpeg-sof-zero", "random", "empty"} <= families
    assert {"jll-orig", "jls-orig", "rle-orig", "j2ki-orig", "jpgext-orig"} <= families


def test_suffixless_files_are_recognisable_by_content(tmp_path):
    bare = [p for p in generate_corpus(tmp_path) if not p.suffix]
    assert len(bare) >= 40 and any(p.name.startswith("IM") for p in bare)
    for path in bare:
        head = path.read_bytes()[:132]
        assert head[128:132] == b"DICM" or head.startswith((b"\x89PNG", b"\xff\xd8\xff")), path


def test_abort_finder_records_abort_and_hang_and_goes_on(tmp_path):
    names = ("a-ok-000.dcm", "b-abort-000.dcm", "c-ok-000.dcm", "d-hang-000.dcm", "e-ok-000.dcm")
    files = [tmp_path / n for n in names]
    outcomes = find_aborts(files, timeout_s=1.0, command=FAKE_CHILD)
    assert [o.status for o in outcomes] == ["ok", "aborted", "ok", "hung", "ok"]
    assert outcomes[1].detail.startswith("SIGABRT")
    rows = table(outcomes, lambda o: family_of(Path(o.path))).splitlines()
    assert any(r.startswith("| b-abort | 1 | 0 |") and "SIGABRT 1" in r for r in rows)


def test_abort_finder_reports_the_reason_of_a_clean_error(tmp_path):
    empty, zeros = tmp_path / "empty.dcm", tmp_path / "zeros.dcm"
    empty.write_bytes(b"")
    zeros.write_bytes(bytes(300))
    assert [(o.status, o.detail) for o in find_aborts([empty, zeros])] == [
        ("error", "empty"),
        ("error", "unreadable"),
    ]
