"""One batch, end to end: fetch -> decode -> model + Grad-CAM calls -> heatmaps -> ONE commit.

Per-image problems (bad input, a key the store can never read) become failure rows and the
rest of the batch is scored. Transient I/O errors (object store, database) surface as
``TransientBatchError`` so the task can retry with backoff; bad input is never retried.
Heatmaps are written before the database rows: the batch's raw maps as ONE packed object
(``pack_key``: from the job and the images it holds, in order), an overlay PNG per image the
heatmap policy wants one for (``overlay_key``: from the job and the object key), so a
redelivered batch overwrites the same objects. Keys already done in the message's
pass are skipped, and a message of a pass older than the job's is dropped (``schema.rules``).
Logs and failure messages show a key as its hash unless ``HEMOSCAN_LOG_KEYS`` is set.

Timing hook: set ``Runtime.observer`` and every batch that reaches its commit hands it one
``workers.timing.BatchTimes``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from hemoscan.errors import ConfigurationError, InvalidKey, ObjectMissing, StorageError
from hemoscan.privacy import scrub, shown_key
from hemoscan.settings import HeatmapPolicy, Settings
from hemoscan.storage import ObjectStore, ObjectTooLarge, needs_locator, read_source
from hybrid_model.errors import ImageError
from hybrid_model.preprocess import DecodeOptions, Frame, Placement, decode_object
from hybrid_model.render import maps_npz, overlay_png
from schema import results, series
from schema.rules import WritePlan
from schema.series import SeriesRef
from workers.runtime import Runtime, release_free_memory
from workers.timing import (
    IMAGE_STAGES,
    BatchTimes,
    ImageTimes,
    Stopwatch,
    cpu_lap,
    notify,
    timed_stage,
)
from workers.verdicts import encode_embedding, recompute, series_ref

log = logging.getLogger(__name__)


class TransientBatchError(Exception):
    """Some keys hit a transient I/O error; retrying them later may succeed."""

    def __init__(self, keys: Sequence[str], cause: str) -> None:
        super().__init__(f"{len(keys)} object(s) hit a transient error: {cause}")
        self.keys = list(keys)
        self.cause = cause


@dataclass
class Item:
    """One object of the batch as it moves through the stages."""

    key: str
    scan_id: int
    shown: str = ""  # the key as logs and messages may show it (hemoscan.privacy)
    # Its images (one for a slice, a volume's axial slices), each set to None once its
    # heatmaps are written, and where each lies.
    series_hint: str | None = None  # the series a manifest named (a pseudonym), if any
    locator: str | None = None  # a DICOMweb instance's sealed UIDs (hemoscan.dicomweb)
    images: list[np.ndarray | None] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)
    frames: list[Frame | None] = field(default_factory=list)  # what the model saw of each
    flags: tuple[str, ...] = ()
    reason: str | None = None
    message: str | None = None
    transient: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    objects_written: int = 0  # overlays put for its images (the maps go in the batch's pack)
    # Thread CPU ms per stage, by stage name: a dict only while an observer watches the batch.
    cpu_ms: dict[str, float] | None = None


@dataclass
class Scored:
    """One image the model scored: its object, its index there, and the model's outputs."""

    item: Item
    index: int
    probability: float
    label: bool
    logit: float
    embedding: np.ndarray


def image_times(item: Item) -> ImageTimes:
    """The observer's record of one scored item, from its ``timings`` and ``cpu_ms``."""
    cpu = item.cpu_ms or {}
    wall = {stage: item.timings.get(f"{stage}_ms", 0.0) for stage in IMAGE_STAGES}
    written = item.objects_written
    return ImageTimes(
        scan_id=item.scan_id,
        key=item.shown,
        wall_ms=wall,
        cpu_ms={stage: cpu.get(stage, 0.0) for stage in IMAGE_STAGES},
        objects_written=written,
    )


def overlay_key(job_id: uuid.UUID, object_key: str, slice_index: int | None = None) -> str:
    """Deterministic overlay key: the same job, object (and slice of a volume, ``.sNNNN``)
    always give the same key.

    The object key is hashed so output keys carry nothing from the source path (which may
    hold identifiers) and have no awkward characters.
    """
    digest = hashlib.sha256(object_key.encode("utf-8")).hexdigest()[:32]
    base = f"{job_id}/{digest[:2]}/{digest}"
    if slice_index is not None:
        base = f"{base}.s{slice_index:04d}"
    return f"{base}.overlay.png"


def pack_key(job_id: uuid.UUID, entries: Sequence[tuple[str, int]]) -> str:
    """Deterministic key of the packed maps of ``entries`` ((object key, slice index), in the
    pack's order): a batch delivered again packs the same images in the same order and
    overwrites the same object."""
    digest = hashlib.sha256()
    for key, index in entries:
        digest.update(f"{len(key)}:{key}:{index};".encode())
    hexed = digest.hexdigest()[:32]
    return f"{job_id}/maps/{hexed[:2]}/{hexed}.maps.npz"


def decode_options(settings: Settings) -> DecodeOptions:
    return DecodeOptions(
        max_pixels=settings.max_pixels,
        max_bytes=settings.max_object_bytes,
        allow_non_ct=settings.allow_non_ct,
        png16=settings.png16.value,
        isolate=settings.isolate_decoders.value,
        head_gate=settings.head_gate,
    )


def _fetch(store: ObjectStore, item: Item, max_bytes: int, secret: bytes = b"") -> bytes | None:
    """The object's bytes, or None with the item's failure (or transient error) set."""
    try:
        return read_source(store, item.key, item.locator, secret, max_bytes)
    except ObjectMissing:
        item.reason, item.message = "missing", "the object no longer exists in the store"
    except ObjectTooLarge as exc:
        item.reason = "too_large"
        item.message = f"object is {exc.size} bytes, over the {exc.limit}-byte limit"
    except InvalidKey as exc:
        item.reason, item.message = "bad_key", f"{item.shown}: {exc}"
    except ConfigurationError as exc:  # e.g. the bucket is gone: every key of it fails alike
        item.reason = "config"
        item.message = scrub(f"{exc}; fix it and run `hemoscan scan` again", item.key, item.shown)
    except StorageError as exc:
        item.transient = scrub(str(exc), item.key, item.shown, store.uri(item.key))
    return None


def _load(rt: Runtime, store: ObjectStore, item: Item, options: DecodeOptions) -> Item:
    cpu = item.cpu_ms
    started = time.perf_counter()
    cpu_at = time.thread_time() if cpu is not None else 0.0
    secret = rt.pseudonym_secret if item.locator else b""
    data = _fetch(store, item, rt.settings.max_object_bytes, secret)
    if data is None:
        return item
    fetched = time.perf_counter()
    item.timings["fetch_ms"] = (fetched - started) * 1000
    if cpu is not None:
        cpu_at = cpu_lap(cpu, "fetch", cpu_at)
    with rt.cpu_slots:  # the wait for a slot (no CPU) counts in neither stage's wall time
        began = time.perf_counter()
        try:
            decoded = decode_object(
                data, item.shown, size=rt.input_size, options=options, framing=rt.framing
            )
            item.images = [d.pixels for d in decoded]
            item.placements = [d.placement for d in decoded]
            item.frames = [d.frame for d in decoded]
            item.flags = tuple(dict.fromkeys(f for d in decoded for f in d.flags))
            del decoded
        except ImageError as exc:
            item.reason, item.message = exc.reason, str(exc)
        except Exception as exc:  # a decoder bug on a corrupt file: the file's problem
            log.exception("unexpected error decoding %s", item.shown)
            item.reason = "unreadable"
            item.message = f"{item.shown}: the decoder failed on this file ({type(exc).__name__})"
        item.timings["decode_ms"] = (time.perf_counter() - began) * 1000
        if cpu is not None:
            cpu_lap(cpu, "decode", cpu_at)
    return item


def _wants_overlay(policy: HeatmapPolicy, label: bool) -> bool:
    return policy is HeatmapPolicy.ALL or (label and policy is not HeatmapPolicy.NONE)


def _wants_map(policy: HeatmapPolicy, label: bool) -> bool:
    return policy in (HeatmapPolicy.ALL, HeatmapPolicy.MAPS) or (
        label and policy is HeatmapPolicy.POSITIVES
    )


def _write_overlay(rt: Runtime, job_id: uuid.UUID, item: Item, index: int, cam: np.ndarray) -> str:
    """Render one image's overlay PNG and put it; frees the image. Returns its URI."""
    image, item.images[index] = item.images[index], None  # not needed after this: free early
    assert image is not None
    cpu = item.cpu_ms
    with rt.cpu_slots:
        started = time.perf_counter()
        cpu_at = time.thread_time() if cpu is not None else 0.0
        overlay = overlay_png(image, cam)
        del image
        encoded = time.perf_counter()
    if cpu is not None:
        cpu_at = cpu_lap(cpu, "render", cpu_at)
    placement = item.placements[index]
    key = overlay_key(job_id, item.key, placement.index if placement.volume else None)
    uri = rt.output.put(key, overlay, "image/png")
    item.objects_written += 1
    # Summed over a volume's slices (one image: its own figures).
    item.timings["render_ms"] = item.timings.get("render_ms", 0.0) + (encoded - started) * 1000
    item.timings["upload_ms"] = (
        item.timings.get("upload_ms", 0.0) + (time.perf_counter() - encoded) * 1000
    )
    if cpu is not None:
        cpu_lap(cpu, "upload", cpu_at)
    return uri


def _write_pack(
    rt: Runtime,
    job_id: uuid.UUID,
    packed: Sequence[Scored],
    maps: Sequence[np.ndarray],
    watch: Stopwatch | None,
) -> str:
    """Put the maps of ``packed`` as one ``.npz`` (row i: ``packed[i]``); returns its URI."""
    entries = [(s.item.key, s.item.placements[s.index].index) for s in packed]
    with timed_stage(watch, "pack"):
        frames = [s.item.frames[s.index] for s in packed]
        data = maps_npz(np.stack(maps), (rt.input_size, rt.input_size), frames)
    with timed_stage(watch, "pack_put"):
        return rt.output.put(pack_key(job_id, entries), data, "application/octet-stream")


# Model calls whose images are fetched and decoded ahead of the one running (see process_batch).
READ_AHEAD = 2


def _model_calls(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def process_batch(
    rt: Runtime,
    job_id: uuid.UUID,
    keys: Sequence[str],
    pass_number: int | None = None,
    attempt_key: str | None = None,
) -> dict[str, Any]:
    """Score one batch of object keys of a job; returns a small summary for the task.

    The batch runs as a short pipeline of model calls (``rt.model_batch`` images, a fixed
    shape, so the compiled model call is traced once): while the model runs on one call
    (TensorFlow releases the GIL), the I/O threads fetch and decode the next ones and render and
    upload the heatmaps of the previous ones. Every heatmap is written before the ONE
    transaction that records the batch's rows, and the task returns only after that commit.
    ``rt.observer``, when set, then receives the batch's ``BatchTimes`` (not for a stale pass).
    """
    started = time.perf_counter()
    observer = rt.observer
    watch = Stopwatch() if observer is not None else None
    job = rt.job(job_id)
    store = rt.store(job.source_uri)
    keys = list(dict.fromkeys(keys))
    with timed_stage(watch, "lookup"), rt.sessions.begin() as session:
        current = results.job_pass(session, job_id)
        pass_number = pass_number or current
        if pass_number < current:
            log.info(
                "batch of job %s: pass %d is stale (job at %d): dropped",
                job_id,
                pass_number,
                current,
            )
            return {"job": str(job_id), "scored": 0, "failed": 0, "reasons": {}, "stale": True}
        ids = results.scan_ids(session, job_id, keys)
        unknown = [k for k in keys if k not in ids]
        if unknown:  # sent by something other than our producer: register them
            results.add_scans(session, job_id, [{"object_key": k} for k in unknown])
            ids.update(results.scan_ids(session, job_id, unknown))
        done = results.done_in_pass(session, job_id, keys, pass_number)
        todo = [k for k in keys if k not in done]
        hints = results.series_hints(session, job_id, todo)
        located = results.locators(session, job_id, todo) if needs_locator(store) else {}

    full = rt.settings.log_keys
    options = decode_options(rt.settings)
    items = [
        Item(
            key=k,
            scan_id=ids[k],
            shown=shown_key(k, full),
            series_hint=hints.get(k),
            locator=located.get(k),
            cpu_ms={} if watch else None,
        )
        for k in keys
        if k not in done
    ]
    parts = _model_calls(len(items), rt.model_batch or rt.settings.batch_size)
    # Fetches are queued (FIFO) READ_AHEAD model calls ahead of the model, so the threads run
    # ahead of it while a task of many calls holds at most that many calls' decoded images;
    # the heatmap writes queued after each call interleave with the fetches still waiting.
    loads: list[Future[Item]] = []

    def fetch_through(call: int) -> None:
        end = parts[min(call, len(parts) - 1)].stop if parts else 0
        loads.extend(
            rt.pool.submit(_load, rt, store, it, options) for it in items[len(loads) : end]
        )

    fetch_through(READ_AHEAD)
    policy = rt.settings.heatmaps
    # Each image, its overlay's put and its row in the batch's pack (None: no overlay, no map).
    writes: list[tuple[Scored, Future[str] | None, int | None]] = []
    packed: list[Scored] = []  # the images whose maps go into the batch's pack, and the maps
    maps: list[np.ndarray] = []
    model_seconds, model_images, model_calls = 0.0, 0, 0
    for call, part in enumerate(parts):
        good = [loaded for loaded in (loads[i].result() for i in part) if loaded.images]
        fetch_through(call + 1 + READ_AHEAD)
        if not good:
            continue
        images = [(it, i) for it in good for i in range(len(it.images))]
        t0 = time.perf_counter()
        with timed_stage(watch, "model"):
            out = rt.gradcam.explain(np.stack([it.images[i] for it, i in images]))  # type: ignore[misc]
        model_seconds += time.perf_counter() - t0
        model_images += len(images)
        model_calls += 1
        for n, (it, i) in enumerate(images):
            prob = float(out.probabilities[n])
            scored_image = Scored(
                it, i, prob, prob >= rt.threshold, float(out.logits[n]), out.embeddings[n]
            )
            future = None
            if _wants_overlay(policy, scored_image.label):
                future = rt.pool.submit(_write_overlay, rt, job_id, it, i, out.maps[n])
            else:
                it.images[i] = None  # not needed any more: free early
            row = None
            if _wants_map(policy, scored_image.label):
                row = len(packed)
                packed.append(scored_image)
                maps.append(out.native[n])
            writes.append((scored_image, future, row))
        del out

    model_ms = model_seconds * 1000 / model_images if model_images else 0.0
    # The batch's maps in one object, put while the overlays' puts run; a volume or a batch
    # is retried whole if it fails, like an overlay's put.
    pack_uri: str | None = None
    pack_error: StorageError | None = None
    if packed:
        try:
            pack_uri = _write_pack(rt, job_id, packed, maps, watch)
        except StorageError as exc:
            pack_error = exc
    del maps
    uploaded: dict[int, list[tuple[Scored, str | None, int | None]]] = {}
    upload_errors: dict[int, tuple[Item, StorageError]] = {}
    for image, future, row in writes:
        try:
            overlay_uri = None if future is None else future.result()
        except StorageError as exc:  # the whole object is retried: a volume is scored whole
            upload_errors.setdefault(image.item.scan_id, (image.item, exc))
            continue
        if row is not None and pack_error is not None:
            upload_errors.setdefault(image.item.scan_id, (image.item, pack_error))
            continue
        uploaded.setdefault(image.item.scan_id, []).append((image, overlay_uri, row))
    predictions: list[dict[str, Any]] = []
    refs: list[SeriesRef] = []  # each prediction's series
    scored: list[Item] = []
    secret = rt.pseudonym_secret
    for scan_id, shots in uploaded.items():
        if scan_id in upload_errors:
            continue
        it = shots[0][0].item
        if watch is not None:
            scored.append(it)
        timings = {k: round(v, 2) for k, v in it.timings.items()}
        timings["model_ms"] = round(model_ms, 2)
        for image, overlay_uri, row in shots:
            placement = it.placements[image.index]
            predictions.append(
                {
                    "scan_id": it.scan_id,
                    "slice_index": placement.index,
                    "probability": float(np.clip(image.probability, 0.0, 1.0)),
                    "label": image.label,
                    "threshold": rt.threshold,
                    "model_version": rt.model_version,
                    "overlay_uri": overlay_uri,
                    "raw_map_uri": None if row is None else pack_uri,
                    "raw_map_index": row,
                    "timings": timings,
                    "worker_host": rt.hostname,
                    "flags": list(it.flags),
                    "z_mm": placement.z_mm,
                    "instance_number": placement.instance,
                    "logit": image.logit,
                    "embedding": encode_embedding(image.embedding),
                    "series_id": None,  # set under the series lock (commit)
                }
            )
            refs.append(series_ref(it.key, placement, secret, it.series_hint))

    failures = [
        {
            "scan_id": it.scan_id,
            "reason": it.reason,
            "message": it.message,
            "attempts": 1,
            "attempt_key": attempt_key,
        }
        for it in items
        if it.reason is not None
    ]
    # Database outages (OperationalError) propagate: the task retries the whole batch, and
    # the heatmaps already written are simply overwritten with the same bytes.
    with timed_stage(watch, "commit"), rt.sessions.begin() as session:
        written = commit(rt, session, job_id, predictions, refs, failures, pass_number)
    release_free_memory()  # keeps the worker's RSS flat over thousands of batches
    if observer is not None and watch is not None:
        watch.finish()
        times = BatchTimes(
            job_id=job_id,
            images=tuple(image_times(it) for it in scored),
            fetched=len(items),
            failed=len(failures),
            model_calls=model_calls,
            model_images=model_images,
            packs_written=int(pack_uri is not None),
            wall_ms=watch.wall,
            cpu_ms=watch.cpu,
        )
        notify(observer, times)

    transient = [it.key for it in items if it.transient] + [
        it.key for it, _ in upload_errors.values()
    ]
    summary = {
        "job": str(job_id),
        "scored": len(predictions),
        "failed": len(failures),
        "positives": sum(1 for p in predictions if p["label"]),
        "reasons": dict(Counter(f["reason"] for f in failures)),
        "skipped": len(done),
        "stale": written.stale,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if transient:
        first = next((it.transient for it in items if it.transient), None)
        cause = first or str(next(iter(upload_errors.values()))[1])
        raise TransientBatchError(transient, f"object store: {cause}")
    return summary


def commit(
    rt: Runtime,
    session: Session,
    job_id: uuid.UUID,
    predictions: list[dict[str, Any]],
    refs: Sequence[SeriesRef],
    failures: Sequence[dict[str, Any]],
    pass_number: int,
) -> WritePlan:
    """Write a batch's rows and recompute the verdicts of every series they touch, in the
    caller's transaction. Lock order, the same in every transaction (docs/architecture.md):
    studies (of the slices' series, new and former), scans, series rows, the job row.

    ``refs[i]`` is the series of ``predictions[i]``. The series the batch's objects belonged to
    before are recomputed too: a failure of a newer pass, or a slice whose series changed,
    takes a slice out of a series."""
    scan_ids = [row["scan_id"] for row in (*predictions, *failures)]
    former = series.series_of_scans(session, scan_ids)
    series_ids = series.lock(
        session, job_id, list({r.series_key: r for r in refs}.values()), list(former)
    )
    for row, ref in zip(predictions, refs, strict=True):
        row["series_id"] = series_ids[ref.series_key]
    written = results.record_batch(session, job_id, predictions, failures, pass_number)
    touched = sorted({*(int(p["series_id"]) for p in written.predictions), *former})
    recompute(
        session,
        rt.series_stage,
        rt.model_version,
        touched,
        slice_threshold=rt.threshold,
        max_slices=rt.settings.series_max_slices,
    )
    results.count_done(session, job_id, pass_number, written.newly_done)
    return written


def undone_keys(
    rt: Runtime, job_id: uuid.UUID, keys: Sequence[str], pass_number: int | None
) -> list[str]:
    """``keys`` without those already done in the message's pass (none for a stale pass).

    A batch delivered again looks at this first: what an earlier delivery finished is neither
    split off, nor scored, nor counted against an image as a death."""
    with rt.sessions() as session:
        current = results.job_pass(session, job_id)
        if (pass_number or current) < current:
            return []
        done = results.done_in_pass(session, job_id, list(keys), pass_number or current)
    return [k for k in dict.fromkeys(keys) if k not in done]


def record_failures(
    rt: Runtime,
    job_id: uuid.UUID,
    keys: Sequence[str],
    pass_number: int | None,
    reason: str,
    message: str,
    *,
    attempts: int,
    attempt_key: str,
) -> None:
    """Give up on ``keys``: each gets a ``reason`` failure row saying why (schema.rules decide
    whether it may replace what the key holds)."""
    with rt.sessions.begin() as session:
        pass_number = pass_number or results.job_pass(session, job_id)
        ids = results.scan_ids(session, job_id, keys)
        rows = [
            {
                "scan_id": ids[k],
                "reason": reason,
                "message": message,
                "attempts": attempts,
                "attempt_key": attempt_key,
            }
            for k in ids
        ]
        commit(rt, session, job_id, [], [], rows, pass_number)
