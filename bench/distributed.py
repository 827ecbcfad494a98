"""PIPELINE (distributed), worker RSS and NAIVE: ``hemoscan scan s3://... --wait`` against ONE
worker process (concurrency 1, as on a 1-GPU node) on Redis, PostgreSQL and SeaweedFS.

images/s runs from the job's creation to its last committed row (``services.job_rate``); the
CPU per image of each consumer comes from ``/proc`` around the main job. Report key
``distributed`` (``pipeline``, ``naive``, ``rss_*``).
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.harness import DB_URL, Context, cli, dist_env, load_average, log
from bench.procstat import cpu_per_image, cpu_snapshot
from bench.services import Worker, drop_jobs, job_rate, manifest, pipeline_setup, purge_queue


def distributed(ctx: Context, n_images: int, n_long: int, n_naive: int) -> None:
    source, queue, env = pipeline_setup(ctx, ctx.files, "")
    keys = [f"ct/{f.name}" for f in ctx.files]
    jobs: list[str] = []
    tag = uuid.uuid4().hex[:6]

    def scan(name: str, env: dict[str, str], *extra: str) -> dict[str, Any]:
        jobs.append(name)
        cli(["scan", source, "--job", name, "--wait", *extra], env)
        result = job_rate(DB_URL, name)
        result["load"] = load_average()
        log(f"{name}: {result['images']} images, {result['images_per_s']} img/s")
        return result

    worker = Worker(env, "bench-pipeline")
    out: dict[str, Any] = {"queue": queue}
    try:
        first100 = str(manifest(keys[:100], "first100"))
        warm = scan(f"bench-{tag}-first100", env, "--manifest", first100)
        out["rss_after_100_mib"] = worker.memory_mib()
        before = cpu_snapshot(worker.pool_pid())
        main = scan(f"bench-{tag}-main", env)
        main["cpu_ms_per_image"] = cpu_per_image(
            before, cpu_snapshot(worker.pool_pid()), main["images"]
        )
        out["pipeline"] = main
        done = 100 + main["images"]
        repeats: list[float] = []
        series = [(100, out["rss_after_100_mib"]["VmRSS"])]
        series.append((done, worker.memory_mib()["VmRSS"]))
        while done < n_long:
            again = scan(f"bench-{tag}-long{len(repeats)}", env)
            repeats.append(again["images_per_s"])
            done += again["images"]
            series.append((done, worker.memory_mib()["VmRSS"]))
        out["rss_series_mib"] = series
        out["rss_after_long_mib"] = worker.memory_mib()
        out["long_images"] = done
        out["long_runs_images_per_s"] = repeats
        out["warm_run_images_per_s"] = warm["images_per_s"]
    finally:
        worker.stop()
    rss100 = out["rss_after_100_mib"]["VmRSS"]
    out["rss_growth"] = round(out["rss_after_long_mib"]["VmRSS"] / rss100 - 1, 4)

    # NAIVE: one image per task, on a worker whose model call takes exactly one image (so it
    # is not charged for padding a 1-image call to the batch shape).
    naive_env = dist_env(ctx.model, queue, HEMOSCAN_BATCH_SIZE="1")
    worker = Worker(naive_env, "bench-naive")
    try:
        naive_keys = str(manifest(keys[:n_naive], "naive"))
        out["naive"] = scan(
            f"bench-{tag}-naive", naive_env, "--manifest", naive_keys, "--batch-size", "1"
        )
    finally:
        worker.stop()
    drop_jobs(DB_URL, jobs)
    purge_queue(queue)
    ctx.report["distributed"] = out
