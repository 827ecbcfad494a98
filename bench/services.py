"""The bench's use of the services: the phantom archives, the rows and objects of its jobs, the
throwaway queues, and the worker processes it starts (``hemoscan worker``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    BUCKET,
    HEMOSCAN,
    REDIS_URL,
    ROOT,
    SCRATCH,
    Context,
    cli,
    dist_env,
    settings,
)


def archive_folder(files: list[Path]) -> Path:
    """A folder holding only the phantom slices (hard links), keyed ct/<name>."""
    folder = SCRATCH / f"archive-{len(files)}"
    (folder / "ct").mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / "ct" / f.name
        if not target.exists():
            os.link(f, target)
    return folder


def s3_archive(files: list[Path]) -> str:
    """``s3://hemoscan-bench/archive-N`` holding the phantoms (uploaded once); its location."""
    from hemoscan.storage import S3Store

    store = S3Store(BUCKET, f"archive-{len(files)}", settings())
    store.create_bucket()
    if sum(1 for _ in store.list()) < len(files):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: store.put(f"ct/{p.name}", p.read_bytes()), files))
    return store.location


def delete_s3_prefix(prefix: str) -> None:
    from hemoscan.storage import s3_client

    client = s3_client(settings())
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def pipeline_setup(ctx: Context, files: list[Path], tag: str) -> tuple[str, str, dict[str, str]]:
    """(source, queue, environment) of a distributed run over ``files``: the archive on S3, a
    throwaway queue, the run's batch sizes, and the database migrated."""
    source = s3_archive(files)
    queue = f"bench-{tag}{uuid.uuid4().hex[:8]}"
    env = dist_env(
        ctx.model,
        queue,
        HEMOSCAN_BATCH_SIZE=str(ctx.batch_size),
        HEMOSCAN_MODEL_BATCH=str(ctx.model_batch),
    )
    cli(["db", "upgrade"], env)
    return source, queue, env


def manifest(keys: list[str], name: str) -> Path:
    path = SCRATCH / f"{name}.csv"
    path.write_text("key\n" + "\n".join(keys) + "\n")
    return path


def job_rate(db_url: str, job_name: str) -> dict[str, Any]:
    """images/s from the job's creation (the producer starts) to the last committed row."""
    from schema.db import session_factory
    from schema.reports import job_run

    with session_factory(db_url)() as session:
        run = job_run(session, job_name)
    created, last = run.created_at, run.last_result_at
    if isinstance(last, str):  # SQLite hands back text
        created, last = datetime.fromisoformat(str(created)), datetime.fromisoformat(last)
    seconds = (last - created).total_seconds()
    mean = {}
    for field in ("fetch_ms", "decode_ms", "render_ms", "upload_ms", "model_ms"):
        values = [t[field] for t in run.timings if t.get(field) is not None]
        mean[field] = round(sum(values) / len(values), 2) if values else None
    return {
        "job_id": str(run.job_id),
        "images": run.scored,
        "failed": run.failed,
        "seconds": round(seconds, 3),
        "images_per_s": round(run.scored / seconds, 2) if seconds > 0 else None,
        "wall_timings_mean": mean,
    }


def drop_jobs(db_url: str, names: list[str]) -> None:
    """Delete the bench's jobs (their rows cascade) and their heatmaps."""
    from schema.db import session_factory
    from schema.jobs import delete_jobs

    with session_factory(db_url).begin() as session:
        ids = delete_jobs(session, names)
    for job_id in ids:
        delete_s3_prefix(f"heatmaps/{job_id}/")


def purge_queue(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(queue, f"_kombu.binding.{queue}")


class Worker:
    """``hemoscan worker --concurrency=1`` in its own session, started and ready."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.log_path = SCRATCH / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*HEMOSCAN, "worker", f"--name={name}@bench", "--concurrency=1"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while True:
            text = self.log_path.read_text(errors="replace")
            if " ready." in text and "loaded model" in text:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{text[-3000:]}")
            time.sleep(0.3)

    def pool_pid(self) -> int:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return int(out.split()[0])

    def memory_mib(self) -> dict[str, float]:
        fields = {}
        for line in Path(f"/proc/{self.pool_pid()}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = round(int(value.split()[0]) / 1024, 1)
        return fields

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()
