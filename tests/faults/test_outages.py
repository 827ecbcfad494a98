"""Broker, database and object-store outages in the middle of a job.

Each test owns the service it breaks (its own Redis, a proxy in front of PostgreSQL, its own
SeaweedFS), and uses the injector's HOLD hook so the outage starts while a batch is known to be
in flight: no sleeps decide the order of events."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from hemoscan.settings import load_settings
from hemoscan.storage import S3Store, open_store, s3_client
from tests.faults.conftest import batch_held, hold_env
from tests.utils.archive import make_phantoms, upload_archive
from tests.utils.servers import RedisServer, SeaweedServer, TcpProxy
from tests.utils.stack import run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_redis_restarted_mid_job(fault_env, archive, db, tmp_path):
    """Fault: the broker (a Redis of the test's own, append-only as in deploy/) shuts down
    while a batch is in flight and starts again. Checked: the worker reconnects by itself and
    the job completes with exactly one prediction per image."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env, hold = hold_env({**fault_env, "HEMOSCAN_BROKER_URL": redis.url}, tmp_path)
    source, keys = archive(32)
    try:
        with workers(env, tmp_path, 1):
            run_cli(["scan", source, "--job", "redis-restart"], env)
            with batch_held(hold):
                redis.stop()
                redis.start()
            db.wait_done("redis-restart", len(keys), timeout=240)
    finally:
        redis.stop()
    assert db.writes("redis-restart") == {k: 1 for k in keys}, "each image scored once"


def test_postgres_unreachable_for_a_while(fault_env, archive, db, tmp_path):
    """Fault: every database connection of the workers is cut and new ones are refused
    (a TCP proxy the test controls) while a batch is in flight; restored after the worker has
    hit the outage. Checked: the worker backs off and retries, and once PostgreSQL is back the
    job completes with no row lost or doubled."""
    pg = urlparse(fault_env["HEMOSCAN_DATABASE_URL"].replace("+psycopg2", ""))
    proxy = TcpProxy(pg.port or 5432)
    proxy.restore()
    proxied = fault_env["HEMOSCAN_DATABASE_URL"].replace(f":{pg.port}/", f":{proxy.port}/")
    env, hold = hold_env({**fault_env, "HEMOSCAN_DATABASE_URL": proxied}, tmp_path)
    source, keys = archive(32)
    with workers(env, tmp_path, 1) as (worker,):
        run_cli(["scan", source, "--job", "pg-outage"], fault_env)  # producer: direct link
        with batch_held(hold):
            proxy.cut()
        worker.wait_for_log("retrying", timeout=120)  # it hit the outage and backs off
        proxy.restore()
        db.wait_done("pg-outage", len(keys), timeout=240)
    proxy.cut()
    assert db.writes("pg-outage") == {k: 1 for k in keys}, "each image scored once"
    assert db.failures("pg-outage") == {}


def test_object_store_stopped_and_restarted(fault_env, db, tmp_path):
    """Fault: the S3 server (a SeaweedFS of the test's own) stops while a batch is in flight
    and starts again on the same data. Checked: fetches fail, are retried with backoff a bounded
    number of times, and the job completes: every image scored once, no failure left."""
    weed = SeaweedServer(tmp_path / "weed")
    weed.start()
    env, hold = hold_env(
        {
            **fault_env,
            "HEMOSCAN_S3_ENDPOINT_URL": weed.url,
            "HEMOSCAN_OUTPUT_LOCATION": "s3://outage-out/heatmaps",
            "HEMOSCAN_S3_MAX_ATTEMPTS": "2",
            "HEMOSCAN_S3_CONNECT_TIMEOUT": "1",
        },
        tmp_path,
    )
    settings = load_settings(s3_endpoint_url=weed.url)
    S3Store("outage-in", "", settings).create_bucket()
    S3Store("outage-out", "", settings).create_bucket()
    files = make_phantoms(tmp_path / "phantoms", 24)
    upload_archive(open_store("s3://outage-in/a", settings), files, bad=False)
    keys = [f"ct/{p.name}" for p in files]
    try:
        with workers(env, tmp_path, 1) as (worker,):
            run_cli(["scan", "s3://outage-in/a", "--job", "s3-outage"], env)
            with batch_held(hold):
                weed.stop()
            worker.wait_for_log("retrying", timeout=120)  # it hit the outage and backs off
            weed.start()
            db.wait_done("s3-outage", len(keys), timeout=240)
    finally:
        weed.stop()
    assert db.writes("s3-outage") == {k: 1 for k in keys}, "each image scored once"
    assert db.failures("s3-outage") == {}


def test_object_deleted_between_listing_and_scoring(fault_env, archive, db, tmp_path, dist_env):
    """Fault: an object is deleted after the producer listed it, before a worker fetches it.
    Checked: it gets one 'missing' failure (attempts 1, no task retry), the rest is scored."""
    env, hold = hold_env(fault_env, tmp_path)
    source, keys = archive(16)
    settings = load_settings(s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"])
    with workers(env, tmp_path, 1) as (worker,):
        run_cli(["scan", source, "--job", "deleted"], env)
        gone = keys[-1]  # in the second batch, not yet fetched
        with batch_held(hold):
            where = urlparse(open_store(source, settings).uri(gone))
            s3_client(settings).delete_object(Bucket=where.netloc, Key=where.path.lstrip("/"))
        db.wait_done("deleted", len(keys))
        log = worker.log()
    assert db.failures("deleted") == {
        gone: ("missing", "the object no longer exists in the store", 1)
    }
    assert db.writes("deleted") == {k: 1 for k in keys[:-1]}, "each image scored once"
    assert "retrying" not in log
