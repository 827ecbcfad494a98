"""Worker processes killed mid-batch: nothing lost, nothing scored twice, no endless loop."""

from __future__ import annotations

import signal

import pytest

from tests.faults.conftest import batch_held, hold_env
from tests.utils.stack import Worker, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pool_process_sigkilled_mid_batch(fault_env, archive, db, tmp_path):
    """Fault: the pool process gets SIGKILL while rendering the first heatmaps of a batch
    (heatmaps partly written, no row committed). Injected by the injector's KILL_ONCE hook.
    Checked: the batch is delivered again, and every image ends with exactly one prediction."""
    marker = tmp_path / "killed"
    env = {
        **fault_env,
        "HEMOSCAN_FAULT_KILL_ONCE": str(marker),
        "HEMOSCAN_BATCH_SIZE": "8",
        "HEMOSCAN_MODEL_BATCH": "2",  # a task of several model calls, fetched ahead
    }
    source, keys = archive(40)
    with workers(env, tmp_path, 1) as (worker,):
        run_cli(["scan", source, "--job", "sigkill", "--wait"], env, timeout=300)
        log = worker.log()
    assert marker.exists(), "the fault was not injected"
    assert "WorkerLostError" in log or "exited prematurely" in log
    assert db.writes("sigkill") == {k: 1 for k in keys}, "each image exactly once"
    assert db.failures("sigkill") == {}


def test_pool_process_sigkilled_before_the_task_body_three_times(fault_env, archive, db, tmp_path):
    """Fault: the pool process dies as the task starts, before its body runs (so before the
    task counts its deliveries), three times in a row (the injector's KILL_PRERUN hook). Checked:
    the batch is delivered again after every death, and every image ends with exactly one
    prediction and no failure."""
    kills = tmp_path / "kills"
    kills.mkdir()
    env = {**fault_env, "HEMOSCAN_FAULT_KILL_PRERUN": f"{kills}:3", "HEMOSCAN_BATCH_SIZE": "16"}
    source, keys = archive(16)  # one batch
    with workers(env, tmp_path, 1) as (worker,):
        run_cli(["scan", source, "--job", "prerun", "--wait"], env, timeout=300)
        log = worker.log()
    assert sorted(p.name for p in kills.iterdir()) == ["kill-0", "kill-1", "kill-2"]
    assert log.count("exited with 'signal 9 (SIGKILL)'") == 3
    assert db.writes("prerun") == {k: 1 for k in keys}, "each image exactly once"
    assert db.failures("prerun") == {}


def test_poison_batch_is_stopped_and_its_images_fail(fault_env, archive, db, tmp_path):
    """Fault: two images whose batch kills the worker on every delivery (the injector's POISON
    hook SIGKILLs the process for any batch holding either of them; they share the first
    batch). Checked: the poison images end as 'poison' failures after a bounded number of
    deliveries, every other image of their batch is scored, and the job ends."""
    env = {
        **fault_env,
        "HEMOSCAN_FAULT_POISON": "phantom_00001.,phantom_00002.",
        "HEMOSCAN_BATCH_SIZE": "4",
        "HEMOSCAN_MAX_DELIVERIES": "2",
    }
    source, keys = archive(12)
    poison = {k for k in keys if "phantom_00001." in k or "phantom_00002." in k}
    assert len(poison) == 2
    with workers(env, tmp_path, 1) as (worker,):
        run_cli(["scan", source, "--job", "poison", "--wait"], env, timeout=300)
        log = worker.log()
    failures = db.failures("poison")
    assert set(failures) == poison
    assert all(
        reason == "poison" and "killed the worker" in msg for reason, msg, _ in failures.values()
    )
    assert db.writes("poison") == {k: 1 for k in set(keys) - poison}, "the rest scored once"
    # Bounded: the batch of 4 dies once; it is split into [0, 1] and [2, 3], each holding one
    # poison image and dying once; each poison image alone then dies MAX_DELIVERIES (2) times.
    deaths = log.count("exited with 'signal 9 (SIGKILL)'")
    assert 0 < deaths <= 1 + 2 + 2 * 2, deaths


def test_worker_sigterm_mid_batch_is_a_warm_shutdown(fault_env, archive, db, tmp_path):
    """Fault: SIGTERM to the worker while a batch is in flight (the injector's HOLD hook keeps
    the first batch running until the test releases it). Checked: the worker finishes that
    batch and exits cleanly, the batches it had not started go to a second worker, and every
    image ends with exactly one prediction."""
    env, hold = hold_env(fault_env, tmp_path)
    source, keys = archive(24)
    first = Worker("first@hemoscan-test", env, tmp_path)
    first.wait_ready()
    run_cli(["scan", source, "--job", "sigterm"], env)
    with batch_held(hold):
        first.proc.send_signal(signal.SIGTERM)  # to the main process: warm shutdown
    assert first.proc.wait(120) == 0
    log = first.log()
    assert "warm shutdown" in log.lower()
    assert list(db.writes("sigterm").values()) == [1] * 8, "the batch in flight was finished"
    env_second = {k: v for k, v in env.items() if k != "HEMOSCAN_FAULT_HOLD"}
    with workers(env_second, tmp_path, 1, prefix="second"):
        db.wait_done("sigterm", len(keys))
    assert db.writes("sigterm") == {k: 1 for k in keys}, "each image exactly once"
