"""record_batch: rows/s of ``schema.results.record_batch``, one transaction per task's worth of
rows, as the workers write them. Report key ``database``.
"""

from __future__ import annotations

import time
import uuid

from bench.harness import DB_URL, Context, load_average, log
from bench.services import drop_jobs


def db_writes(ctx: Context) -> None:
    from schema import jobs, results
    from schema.db import session_factory, upgrade

    upgrade(DB_URL)  # as `hemoscan db upgrade`: the step may run alone (--only db)
    sessions = session_factory(DB_URL)
    name = f"bench-db-{uuid.uuid4().hex[:6]}"
    n = 3200 if ctx.quick else 9600
    with sessions.begin() as session:
        job, _ = jobs.open_job(session, name, "s3://bench/none", {}, "bench")
        job_id = job.id
        results.add_scans(session, job_id, [{"object_key": f"k{i}"} for i in range(n)])
        ids = list(results.scan_ids(session, job_id, [f"k{i}" for i in range(n)]).values())
    rows = [
        {
            "scan_id": sid,
            "probability": 0.5,
            "label": False,
            "threshold": 0.5,
            "model_version": "bench",
            "overlay_uri": f"s3://bench/{sid}.png",
            "raw_map_uri": f"s3://bench/{sid}.npy",
            "timings": {"fetch_ms": 1.0, "decode_ms": 1.0, "model_ms": 10.0},
            "worker_host": "bench",
        }
        for sid in ids
    ]
    t0 = time.perf_counter()
    for start in range(0, n, ctx.batch_size):
        with sessions.begin() as session:
            results.record_batch(session, job_id, rows[start : start + ctx.batch_size], [])
    seconds = time.perf_counter() - t0
    ctx.report["database"] = {
        "rows": n,
        "rows_per_transaction": ctx.batch_size,
        "rows_per_s": round(n / seconds, 1),
        "load": load_average(),
    }
    log(f"database: {ctx.report['database']}")
    drop_jobs(DB_URL, [name])
