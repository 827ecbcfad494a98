"""Micro-benchmarks behind the pipeline's knobs: each variant A/B'd within one run.

    .venv/bin/python -m bench.micro render      # overlay PNG encoder settings: CPU and bytes
    .venv/bin/python -m bench.micro s3          # boto3 client settings: CPU per GET / PUT
    .venv/bin/python -m bench.micro clients     # boto3 vs obstore stores: CPU and GETs/s
    .venv/bin/python -m bench.micro producer    # scan registration and broker sends
    .venv/bin/python -m bench.micro series      # a long series' verdict: stage vs database

CPU is thread CPU time (``time.thread_time``) of the calling thread, plus, for ``s3``, the CPU
the SeaweedFS process spent per request (from ``/proc``). Variants are interleaved in rounds so
a training job that comes and goes on the shared cores hits them alike. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.harness import BUCKET, DB_URL, REDIS_URL, S3_URL, load_average, model_path, phantoms
from bench.procstat import pids_named, processes_cpu


def _get_body(client: Any, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _rounds(variants: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    """Thread CPU ms per call of each variant, best round of ``rounds`` (interleaved)."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.thread_time()
            for _ in range(calls):
                fn()
            ms = (time.thread_time() - t0) * 1000 / calls
            best[name] = round(min(best.get(name, ms), ms), 3)
    return best


# --- render --------------------------------------------------------------------------------


def _images_and_maps(n: int = 16) -> tuple[Any, Any]:
    import numpy as np

    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import load_model
    from hybrid_model.preprocess import decode

    files = phantoms(n)
    images = np.stack([decode(f.read_bytes(), f.name) for f in files])
    loaded = load_model(model_path()[0])
    _, maps = GradCam(loaded.model, model_batch=n)(images)
    return images, maps


def render() -> dict[str, Any]:
    import cv2
    import numpy as np

    from hybrid_model import render as r

    images, maps = _images_and_maps()
    grey = np.round(np.clip(images[0][..., 0], 0, 1) * 255).astype(np.uint8)
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    heat = cv2.applyColorMap(np.round(maps[0] * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(heat, 0.4, base, 0.6, 0.0)
    encoders = {
        "opencv default (level 1, RLE, all filters)": [],
        "level 1, fast filters": [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS],
        "level 1, filter SUB": [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB],
        "level 1, filter NONE": [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE],
        "level 1, filter UP": [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP],
        "level 1, filter PAETH": [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH],
        "level 0 (stored), filter NONE": [
            cv2.IMWRITE_PNG_COMPRESSION,
            0,
            cv2.IMWRITE_PNG_FILTER,
            cv2.IMWRITE_PNG_FILTER_NONE,
        ],
        "level 3, default strategy": [cv2.IMWRITE_PNG_COMPRESSION, 3],
        "huffman only, filter SUB": [
            cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
            cv2.IMWRITE_PNG_FILTER,
            cv2.IMWRITE_PNG_FILTER_SUB,
        ],
        "RLE, filter SUB": [
            cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_RLE,
            cv2.IMWRITE_PNG_FILTER,
            cv2.IMWRITE_PNG_FILTER_SUB,
        ],
    }
    sizes = {}
    variants: dict[str, Callable[[], Any]] = {}
    for name, params in encoders.items():
        sizes[name] = int(np.mean([len(cv2.imencode(".png", blended, params)[1]) for _ in (0,)]))
        variants[name] = partial(cv2.imencode, ".png", blended, params)

    # Whole overlays over 16 different images (the function the workers call).
    i = [0]

    def overlay() -> bytes:
        i[0] = (i[0] + 1) % len(images)
        return r.overlay_png(images[i[0]], maps[i[0]])

    def raw() -> bytes:
        i[0] = (i[0] + 1) % len(images)
        return r.raw_map_npy(maps[i[0]])

    variants["overlay_png (as committed now)"] = overlay
    variants["raw_map_npy"] = raw
    cpu = _rounds(variants, rounds=5, calls=100)
    overlay_bytes = [len(r.overlay_png(im, m)) for im, m in zip(images, maps, strict=True)]
    return {
        "encode_cpu_ms": {k: v for k, v in cpu.items() if k in encoders},
        "encode_bytes": sizes,
        "overlay_png_cpu_ms": cpu["overlay_png (as committed now)"],
        "overlay_png_mean_bytes": int(np.mean(overlay_bytes)),
        "raw_map_npy_cpu_ms": cpu["raw_map_npy"],
        "raw_map_npy_bytes": len(r.raw_map_npy(maps[0])),
    }


# --- s3 --------------------------------------------------------------------------------------


def _client(expect: bool = True, **config: Any):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config
    from botocore.handlers import add_expect_header

    base = {"region_name": "us-east-1", "s3": {"addressing_style": "path"}}
    base.update(config)
    client = boto3.session.Session().client("s3", endpoint_url=S3_URL, config=Config(**base))
    if not expect:
        client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


def s3() -> dict[str, Any]:
    from hemoscan.settings import load_settings
    from hemoscan.storage import S3Store

    settings = load_settings(s3_endpoint_url=S3_URL)
    S3Store(BUCKET, "", settings).create_bucket()
    files = phantoms(16)
    source = files[0].read_bytes()
    png = os.urandom(60_000)
    npy = os.urandom(131_200)
    clients = {
        "default config": _client(),
        "parameter_validation off": _client(parameter_validation=False),
        "checksums when_required": _client(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
        "both": _client(
            parameter_validation=False,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
        "no Expect: 100-continue": _client(expect=False),
        "all three": _client(
            expect=False,
            parameter_validation=False,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    }
    for c in clients.values():
        c.put_object(Bucket=BUCKET, Key="micro/source.dcm", Body=source)
    variants: dict[str, Callable[[], Any]] = {}
    for name, c in clients.items():
        variants[f"GET source, {name}"] = partial(_get_body, c, "micro/source.dcm")
        variants[f"PUT 60 kB, {name}"] = partial(
            c.put_object, Bucket=BUCKET, Key="micro/o.png", Body=png, ContentType="image/png"
        )
        variants[f"PUT 128 kB, {name}"] = partial(
            c.put_object, Bucket=BUCKET, Key="micro/m.npy", Body=npy
        )
    store = S3Store(BUCKET, "micro", settings)
    variants["S3Store.get (as committed now)"] = lambda: store.get("source.dcm")
    variants["S3Store.put 60 kB (as committed now)"] = lambda: store.put("o.png", png, "image/png")
    weed = pids_named("weed")
    # SeaweedFS CPU per request, measured around the same loops.
    server: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(3):
        for name, fn in variants.items():
            s0, t0 = processes_cpu(weed), time.thread_time()
            for _ in range(100):
                fn()
            ms = (time.thread_time() - t0) * 10
            sv = (processes_cpu(weed) - s0) * 10
            cpu[name] = round(min(cpu.get(name, ms), ms), 3)
            server[name] = round(min(server.get(name, sv), sv), 3)
    return {
        "client_thread_cpu_ms_per_request": cpu,
        "seaweedfs_cpu_ms_per_request": server,
        "source_bytes": len(source),
    }


# --- clients -------------------------------------------------------------------------------


def clients(
    rounds: int = 3, calls: int = 200, threads: int = 8, seconds: float = 3.0
) -> dict[str, Any]:
    """``HEMOSCAN_S3_CLIENT`` side by side: the two stores as the pipeline uses them.

    CPU is the whole process's (``time.process_time``): obstore runs its requests on Rust
    threads, which a thread clock of the caller would not see. Per request, sequential calls,
    best of interleaved rounds; then GETs per second and CPU per GET with ``threads`` threads,
    as a worker's I/O pool fetches."""
    from concurrent.futures import ThreadPoolExecutor

    from hemoscan.settings import load_settings
    from hemoscan.storage import open_store

    stores = {}
    for name in ("boto3", "obstore"):
        settings = load_settings(s3_endpoint_url=S3_URL, s3_client=name)
        stores[name] = open_store(f"s3://{BUCKET}/clients", settings)
    source = phantoms(16)[0].read_bytes()
    png = os.urandom(20_000)
    stores["boto3"].create_bucket()  # type: ignore[attr-defined]
    stores["boto3"].put("source.dcm", source)
    per_request: dict[str, float] = {}
    for _ in range(rounds):
        for name, store in stores.items():
            for label, fn in (
                ("GET", partial(store.get, "source.dcm")),
                ("PUT 20 kB", partial(store.put, f"o-{name}.png", png, "image/png")),
            ):
                t0 = time.process_time()
                for _ in range(calls):
                    fn()
                ms = (time.process_time() - t0) * 1000 / calls
                key = f"{label}, {name}"
                per_request[key] = round(min(per_request.get(key, ms), ms), 3)
    concurrent: dict[str, dict[str, float]] = {}
    for name, store in stores.items():
        done = 0
        with ThreadPoolExecutor(threads) as pool:
            t0, c0 = time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                list(pool.map(store.get, ["source.dcm"] * (threads * 8)))
                done += threads * 8
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        concurrent[name] = {
            "gets_per_s": round(done / wall, 1),
            "process_cpu_ms_per_get": round(cpu * 1000 / done, 3),
        }
    return {
        "process_cpu_ms_per_request": per_request,
        f"{threads}_threads": concurrent,
        "get_bytes": len(source),
        "load_average": load_average(),
    }


# --- producer ------------------------------------------------------------------------------


def _eventless_sender(settings: Any) -> Any:
    """The product's sender through an app whose task-sent event is off (``make_celery`` turns
    it on for Flower): the "off" variant of the send rate."""
    from producer.senders import BrokerSender
    from workers.celery_app import make_celery

    app = make_celery(settings)
    app.conf.task_send_sent_event = False
    return BrokerSender(settings, app=app)


def producer(n_keys: int = 100_000, chunk: int = 2000) -> dict[str, Any]:
    """Scan registration (COPY vs executemany) and broker sends (keys per task, sent event)."""
    import uuid

    import redis

    from hemoscan.settings import load_settings
    from producer.senders import BrokerSender
    from schema import jobs, results
    from schema.db import session_factory, upgrade

    upgrade(DB_URL)
    sessions = session_factory(DB_URL)
    keys = [f"slices/{i:07d}.dcm" for i in range(n_keys)]
    register: dict[str, float] = {}
    names = []
    for _ in range(2):
        for name, fn in (
            ("executemany + RETURNING", results.add_scans_executemany),
            ("COPY + INSERT ... SELECT", results.add_scans),
        ):
            job_name = f"bench-micro-{uuid.uuid4().hex[:6]}"
            names.append(job_name)
            with sessions.begin() as session:
                job_id = jobs.open_job(session, job_name, "s3://b/p", {}, "v")[0].id
            t0 = time.perf_counter()
            for start in range(0, n_keys, chunk):
                rows = [{"object_key": k} for k in keys[start : start + chunk]]
                with sessions.begin() as session:
                    assert len(fn(session, job_id, rows)) == len(rows)
            rate = n_keys / (time.perf_counter() - t0)
            register[name] = round(max(register.get(name, 0.0), rate), 1)
    with sessions.begin() as session:
        jobs.delete_jobs(session, names)

    queue = f"bench-throwaway-{uuid.uuid4().hex[:8]}"
    settings = load_settings(broker_url=REDIS_URL, queue=queue)
    sends: dict[str, float] = {}
    n_send = 20_000
    job = str(uuid.uuid4())
    try:
        for _ in range(2):
            for per_task in (32, 128):
                for event in (True, False):
                    sender = BrokerSender(settings) if event else _eventless_sender(settings)
                    t0 = time.perf_counter()
                    for start in range(0, n_send, per_task):
                        sender.send(job, keys[start : start + per_task], 1)
                    rate = n_send / (time.perf_counter() - t0)
                    sender.close()
                    name = f"{per_task} keys per task, sent event {'on' if event else 'off'}"
                    sends[name] = round(max(sends.get(name, 0.0), rate), 1)
    finally:
        redis.Redis.from_url(REDIS_URL).delete(queue, f"_kombu.binding.{queue}")
    return {
        "register_keys_per_s": register,
        "register_chunk": chunk,
        "register_keys": n_keys,
        "send_keys_per_s_one_thread": sends,
        "send_keys": n_send,
    }


def series(sizes: tuple[int, ...] = (1_000, 10_000, 50_000), rounds: int = 3) -> dict[str, Any]:
    """One batch's verdict recompute of a folder series of N stored slices (random evidence
    vectors, the demo series stage), in a transaction that takes the study's lock as a batch
    does: the series stage over every slice (``HEMOSCAN_SERIES_MAX_SLICES`` above N) against
    the database's max of slices (the default limit); best of ``rounds``, wall and this
    process's CPU ms per batch. The job is deleted afterwards."""
    import uuid

    import numpy as np

    from bench.services import drop_jobs
    from hemoscan.settings import Settings
    from hybrid_model.io import load_model
    from hybrid_model.series import load_stage, sigmoid
    from schema import jobs, results
    from schema import series as series_rows
    from schema.db import session_factory, upgrade
    from schema.series import SeriesRef
    from workers.verdicts import encode_embedding, recompute

    upgrade(DB_URL)
    sessions = session_factory(DB_URL)
    model, _ = model_path()
    loaded = load_model(model)
    threshold = float(loaded.threshold)
    version = str(loaded.metadata.get("version", "bench"))
    stage = load_stage(Settings().series_model_path, loaded.metadata, threshold)
    limit = int(Settings.model_fields["series_max_slices"].default)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"method": stage.method, "limit": limit, "sizes": {}}
    for n in sizes:
        name = f"bench-series-{n}-{uuid.uuid4().hex[:6]}"
        keys = [f"flat/{i:07d}.png" for i in range(n)]
        with sessions.begin() as session:
            job, _ = jobs.open_job(session, name, "s3://bench/flat", {}, "bench")
            results.add_scans(session, job.id, [{"object_key": k} for k in keys])
            ids = results.scan_ids(session, job.id, keys)
            sid = series_rows.lock(session, job.id, [SeriesRef("s", "t", "folder")])["s"]
        try:
            for start in range(0, n, 5000):
                logits = rng.normal(-3.0, 2.0, len(keys[start : start + 5000]))
                rows: list[dict[str, Any]] = [
                    {"scan_id": ids[k], "probability": float(sigmoid(lg)),
                     "label": bool(sigmoid(lg) >= threshold), "threshold": threshold,
                     "model_version": version, "timings": {}, "flags": [],
                     "series_id": sid, "z_mm": None, "instance_number": None,
                     "logit": float(lg), "embedding": encode_embedding(rng.random(32))}
                    for k, lg in zip(keys[start : start + 5000], logits, strict=True)
                ]  # fmt: skip
                with sessions.begin() as session:
                    results.record_batch(session, job.id, rows, [], 1)
            figures: dict[str, Any] = {}
            for label, cap in (("stage", n + 1), ("database", limit)):
                best: list[tuple[float, float]] = []
                for _ in range(rounds):
                    t0, c0 = time.perf_counter(), time.process_time()
                    with sessions.begin() as session:
                        series_rows.lock(session, job.id, [], [sid])
                        recompute(session, stage, version, [sid],
                                  slice_threshold=threshold, max_slices=cap)  # fmt: skip
                    best.append(
                        ((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000)
                    )
                wall, cpu = min(best)
                figures[label] = {
                    "wall_ms_per_batch": round(wall, 1),
                    "cpu_ms_per_batch": round(cpu, 1),
                    "wall_ms_per_image_of_a_256_key_task": round(wall / 256, 3),
                }
            out["sizes"][str(n)] = figures
        finally:
            drop_jobs(DB_URL, [name])
    return out


def main(argv: list[str] | None = None) -> int:
    parts = {
        "render": render,
        "s3": s3,
        "clients": clients,
        "producer": producer,
        "series": series,
    }
    names = (argv if argv is not None else sys.argv[1:]) or list(parts)
    out: dict[str, Any] = {"load_at_start": load_average()}
    for name in names:
        out[name] = parts[name]()
        out[f"load_after_{name}"] = load_average()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
