"""The fuzz corpus (tests/utils/fuzz.py) in a real worker: no file takes a process down."""

from __future__ import annotations

import pytest

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from tests.utils.fuzz import generate_corpus
from tests.utils.stack import run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Peak resident memory one pool process may reach on the corpus: TensorFlow and the tiny model
# (about 0.7 GB), plus the largest image the limits admit: the corpus's 10 KB JPEG claiming
# 7000 x 7000 pixels (under HEMOSCAN_MAX_PIXELS) decodes to 0.6 GB of float32 channels.
# Measured 1.5 GB (2026-12-01). A hostile header that made a decoder allocate what it claims
# (65535 x 65535 x 4 bytes is 16 GB) would pass the bound by far.
PEAK_RSS_BOUND = int(2.5 * 1024**3)


def _peak_rss(pid: int) -> int:
    """VmHWM of a process: the most resident memory it has had."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_fuzz_corpus_in_a_worker_causes_no_pool_death(dist_env, db, tmp_path):
    """Fault: several hundred mutated DICOM, PNG and JPEG files (truncations, byte flips in
    header and pixel data, hostile header values, on compressed and uncompressed CT), with
    python-gdcm installed as in CI, scanned by one real worker. Round 1 lost about 2 % of such
    files to aborts inside GDCM, each killing the pool process on every delivery. Checked: no
    pool process exits on a signal and none is replaced (no split, no poison), every object
    ends with a prediction or a failure whose reason is bad input, and the pool process's
    peak memory stays under the bound."""
    files = generate_corpus(tmp_path / "corpus")
    assert len(files) >= 300, len(files)
    source = f"s3://{dist_env['HEMOSCAN_TEST_BUCKET']}/fuzz"
    store = open_store(source, load_settings(s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"]))
    keys = []
    for path in files:
        key = path.relative_to(tmp_path / "corpus").as_posix()
        store.put(key, path.read_bytes())
        keys.append(key)
    env = {**dist_env, "HEMOSCAN_BATCH_SIZE": "32"}
    with workers(env, tmp_path, 1) as (worker,):
        pool = worker.pool_pids()
        run_cli(["scan", source, "--job", "fuzz", "--wait"], env, timeout=600)
        assert worker.pool_pids() == pool, "a pool process was replaced"
        peak = max(_peak_rss(pid) for pid in pool)
        log = worker.log()
    print(f"fuzz corpus: {len(keys)} objects; worker pool peak RSS {peak / 1024**2:.0f} MiB")
    assert "exited with 'signal" not in log and "WorkerLostError" not in log
    assert "split in two" not in log
    scored, failures = set(db.predictions("fuzz")), db.failures("fuzz")
    assert scored | set(failures) == set(keys) and not scored & set(failures)
    reasons = {reason for reason, _, _ in failures.values()}
    # CT_small, the corpus's base, is a spine slice: its decodable mutants end as not_head.
    assert reasons <= {"empty", "unreadable", "unsupported", "too_large", "not_ct", "not_head"}
    assert peak < PEAK_RSS_BOUND
