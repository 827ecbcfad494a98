"""WADO-RS failures follow the object store's rules (issue 17): a PACS that goes away while a
batch is in flight is transient (retried with backoff, then scored), an instance deleted after
the listing is ``missing`` (no retry), credentials the PACS refuses at retrieval are
``config`` (no retry, every key says why). The PACS is the real Orthanc, reached through a
TCP proxy the test can cut."""

from __future__ import annotations

import uuid

import pytest

from hemoscan.dicomweb import instance_key
from tests.faults.conftest import batch_held, hold_env
from tests.utils.pacs import delete_instance, stow_phantom_studies
from tests.utils.servers import TcpProxy
from tests.utils.stack import run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pacs(fault_env, orthanc, tmp_path, **extra: str):  # type: ignore[no-untyped-def]
    """One phantom study (its own description) in Orthanc; the env to scan it through a proxy
    with the injector's HOLD hook (batches of 8); the proxy (up); the datasets; the keys."""
    from urllib.parse import urlsplit

    marker = f"hemoscan-fault-{uuid.uuid4().hex[:10]}"
    sent = stow_phantom_studies(orthanc, tmp_path / "src", 1, seed=61, marker=marker)
    proxy = TcpProxy(urlsplit(orthanc.url).port or 80)
    proxy.restore()
    env, hold = hold_env(
        {
            **fault_env,
            "HEMOSCAN_DICOMWEB_USERNAME": orthanc.user,
            "HEMOSCAN_DICOMWEB_PASSWORD": orthanc.password,
            "HEMOSCAN_DICOMWEB_MAX_ATTEMPTS": "2",
            "HEMOSCAN_DICOMWEB_CONNECT_TIMEOUT": "1",
            "HEMOSCAN_HEAD_GATE": "false",
            **extra,
        },
        tmp_path,
    )
    secret = env["HEMOSCAN_PSEUDONYM_KEY"].encode()
    keys = {
        ds.SOPInstanceUID: instance_key(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, secret
        )
        for ds in sent
    }
    source = f"dicomweb+http://127.0.0.1:{proxy.port}/dicom-web"
    scan = ["scan", source, "--study-description", marker]
    return env, hold, proxy, scan, keys


def test_pacs_unreachable_while_a_batch_is_in_flight(fault_env, orthanc, db, tmp_path):
    """Fault: the connection to the PACS is cut (and refused) while a worker is inside a
    batch, then restored. Checked: the retrievals fail, the batch is retried with backoff, and
    the job completes: every instance scored once, no failure left."""
    env, hold, proxy, scan, keys = _pacs(fault_env, orthanc, tmp_path)
    try:
        with workers(env, tmp_path, 1) as (worker,):
            run_cli([*scan, "--job", "pacs-outage"], env)
            with batch_held(hold):
                proxy.cut()
            worker.wait_for_log("retrying", timeout=120)  # it hit the outage and backs off
            proxy.restore()
            db.wait_done("pacs-outage", len(keys), timeout=240)
            log = worker.log()
    finally:
        proxy.cut()
    assert db.writes("pacs-outage") == {k: 1 for k in keys.values()}, "each scored once"
    assert db.failures("pacs-outage") == {}
    assert not any(uid in log for uid in keys), "a UID in the worker's log"


def test_instance_deleted_from_the_pacs_between_listing_and_scoring(
    fault_env, orthanc, db, tmp_path
):
    """Fault: an instance is deleted from the PACS after the producer listed it, before a
    worker retrieves it (WADO-RS answers 404). Checked: it gets one 'missing' failure
    (attempts 1, no retry) and the rest is scored."""
    env, hold, proxy, scan, keys = _pacs(fault_env, orthanc, tmp_path)
    uid, gone = list(keys.items())[-1]  # in the last batch, not yet retrieved
    try:
        with workers(env, tmp_path, 1) as (worker,):
            run_cli([*scan, "--job", "pacs-deleted"], env)
            with batch_held(hold):
                delete_instance(orthanc, uid)
            db.wait_done("pacs-deleted", len(keys))
            log = worker.log()
    finally:
        proxy.cut()
    assert db.failures("pacs-deleted") == {
        gone: ("missing", "the object no longer exists in the store", 1)
    }
    assert db.writes("pacs-deleted") == {k: 1 for k in keys.values() if k != gone}
    assert "retrying" not in log


def test_credentials_refused_at_retrieval_fail_every_key_once_with_the_reason(
    fault_env, orthanc, db, tmp_path
):
    """Fault: the producer lists with valid credentials, the worker holds a wrong password
    (WADO-RS answers 401). Checked: every key gets one 'config' failure naming the
    credentials setting, nothing is retried; a rerun with the right password scores them."""
    env, hold, proxy, scan, keys = _pacs(fault_env, orthanc, tmp_path)
    wrong = {**env, "HEMOSCAN_DICOMWEB_PASSWORD": "not-the-password"}
    try:
        with workers(wrong, tmp_path, 1, prefix="wrong") as (worker,):
            run_cli([*scan, "--job", "pacs-401"], env)
            with batch_held(hold):
                pass
            db.wait_done("pacs-401", len(keys))
            log = worker.log()
        failures = db.failures("pacs-401")
        assert set(failures) == set(keys.values())
        assert {(reason, attempts) for reason, _, attempts in failures.values()} == {("config", 1)}
        assert all("HEMOSCAN_DICOMWEB_USERNAME" in m for _, m, _ in failures.values())
        assert "retrying" not in log
        with workers(env, tmp_path, 1, prefix="right"):
            # A resume sends the keys whose failure a rerun may fix ('config') again; their
            # failure rows are pending meanwhile, so --wait returns only once the retries ended
            # (the checks below read the database right after it, without waiting).
            again = run_cli([*scan, "--job", "pacs-401", "--wait"], env)
            shown = " ".join((again.stdout + again.stderr).split())
            assert f"sent {len(keys)} of {len(keys)}" in shown
            assert f"job done: {len(keys)} scored" in shown
            assert db.failures("pacs-401") == {}
    finally:
        proxy.cut()
    assert db.failures("pacs-401") == {}
    assert db.writes("pacs-401") == {k: 1 for k in keys.values()}
