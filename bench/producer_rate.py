"""producer: ``run_scan`` of a 100k-key manifest (and a 10k one, to show memory stays flat) in a
child process that reports its own peak RSS. Report key ``producer``.

Messages go to a throwaway queue that is deleted afterwards, as are the jobs' rows. The child
times its sends with a ``Sender`` wrapped around the broker's (``run_scan(sender=...)``) and its
database work with SQLAlchemy's session events: nothing of the producer is replaced.

    python -m bench.producer_rate MANIFEST QUEUE JOB FOLDER MODEL    # the child; prints JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness import (
    DB_URL,
    REDIS_URL,
    ROOT,
    SCRATCH,
    Context,
    base_env,
    cli,
    load_average,
    log,
)
from bench.services import drop_jobs, purge_queue

if TYPE_CHECKING:
    from producer.senders import Sender


class TimedSender:
    """A ``producer.senders.Sender`` that passes each send on and sums the time it took
    (``run_scan`` sends from its one sender thread, so this is that thread's busy time)."""

    in_process = False

    def __init__(self, inner: Sender) -> None:
        self.inner = inner
        self.busy_s = 0.0

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        try:
            return self.inner.send(job_id, keys, pass_number)
        finally:
            self.busy_s += time.perf_counter() - t0

    def close(self) -> None:
        self.inner.close()


class TransactionClock:
    """Wall seconds spent inside ORM transactions in this process, from each transaction's
    first statement (``after_begin``) to the end of its commit or rollback."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began: dict[int, float] = {}

    def listen(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        event.listen(Session, "after_begin", self._begin)
        event.listen(Session, "after_commit", self._end)
        event.listen(Session, "after_rollback", self._end)

    def _begin(self, session: Any, transaction: Any, connection: Any) -> None:
        self._began.setdefault(id(session), time.perf_counter())

    def _end(self, session: Any) -> None:
        began = self._began.pop(id(session), None)
        if began is not None:
            self.seconds += time.perf_counter() - began


def child(manifest: str, queue: str, job: str, folder: str, model: str) -> dict[str, Any]:
    """One scan of the manifest in this process; its figures and its own peak RSS."""
    from hemoscan.settings import load_settings
    from producer.scan import ScanPlan, run_scan
    from producer.senders import BrokerSender

    settings = load_settings(
        broker_url=REDIS_URL, database_url=DB_URL, queue=queue, model_path=model
    )
    transactions = TransactionClock()
    transactions.listen()
    sender = TimedSender(BrokerSender(settings))
    try:
        plan = ScanPlan(source=folder, job_name=job, manifest=Path(manifest))
        outcome = run_scan(settings, plan, sender=sender)
    finally:
        sender.close()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return {
        "sent": outcome.sent,
        "listed": outcome.listed,
        "seconds": outcome.seconds,
        "peak_rss_mib": round(hwm / 1024, 1),
        "register_db_s": round(transactions.seconds, 3),
        "send_thread_busy_s": round(sender.busy_s, 3),
    }


def producer(ctx: Context, n_keys: int) -> None:
    folder = SCRATCH / "producer-source"
    folder.mkdir(parents=True, exist_ok=True)
    env = base_env(ctx.model)
    cli(["db", "upgrade"], {**env, "HEMOSCAN_DATABASE_URL": DB_URL})
    out: dict[str, Any] = {}
    names: list[str] = []
    queue = f"bench-throwaway-{uuid.uuid4().hex[:8]}"
    try:
        for count in (n_keys // 10, n_keys):
            manifest = SCRATCH / f"keys-{count}.csv"
            if not manifest.exists():
                manifest.write_text("".join(f"slices/{i:07d}.dcm\n" for i in range(count)))
            name = f"bench-producer-{uuid.uuid4().hex[:6]}"
            names.append(name)
            args = [str(manifest), queue, name, str(folder), str(ctx.model)]
            proc = subprocess.run(
                [sys.executable, "-m", "bench.producer_rate", *args],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["keys_per_s"] = round(result["sent"] / result["seconds"], 1)
            result["load"] = load_average()
            out[f"keys_{count}"] = result
            log(f"producer {count} keys: {result}")
    finally:
        purge_queue(queue)
        drop_jobs(DB_URL, names)
    big, small = out[f"keys_{n_keys}"], out[f"keys_{n_keys // 10}"]
    ctx.report["producer"] = {
        **big,
        "by_listing": out,
        "peak_rss_growth_10x_listing": round(big["peak_rss_mib"] / small["peak_rss_mib"] - 1, 4),
        "queue_deleted": queue,
    }


if __name__ == "__main__":
    print(json.dumps(child(*sys.argv[1:6])))
