"""The pipeline's timing hook (``Runtime.observer``): one record per scored image, every stage
present, from the worker's own ``process_batch`` on SQLite and local folders (no services, no
TensorFlow: the model call is a stand-in returning fixed probabilities and maps)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from hemoscan.settings import HeatmapPolicy, load_settings
from hemoscan.storage import LocalStore
from hybrid_model.gradcam import Explained
from hybrid_model.series import SeriesStage
from schema import jobs, results
from schema.db import session_factory, upgrade
from schema.models import Prediction
from tests.utils.archive import make_phantoms
from workers.pipeline import Item, image_times, process_batch
from workers.runtime import Runtime
from workers.timing import BATCH_STAGES, HEATMAP_OBJECTS, IMAGE_STAGES, BatchTimes

SIZE = 64  # the stand-in model's input size


class FakeGradCam:
    """Fixed probabilities, flat maps, their logits and 4-wide evidence vectors."""

    def explain(self, images: np.ndarray) -> Explained:
        n = len(images)
        probs = np.linspace(0.1, 0.9, n, dtype=np.float32)
        return Explained(
            probs,
            np.full((n, SIZE, SIZE), 0.5, np.float32),
            np.log(probs / (1 - probs)),
            np.ones((n, 4), np.float32),
            np.full((n, SIZE // 4, SIZE // 4), 0.5, np.float32),
        )


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    """A folder of 6 phantoms and one object that is not an image."""
    folder = tmp_path_factory.mktemp("archive")
    files = make_phantoms(tmp_path_factory.mktemp("phantoms"), 6)
    store = LocalStore(folder)
    for f in files:
        store.put(f"ct/{f.name}", f.read_bytes())
    store.put("bad/not-an-image.png", b"plain text, not pixels\n" * 10)
    return folder, [f"ct/{f.name}" for f in files] + ["bad/not-an-image.png"]


@pytest.fixture
def runtime(tmp_path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    def build(heatmaps: HeatmapPolicy, observer: Any) -> Runtime:
        url = f"sqlite:///{tmp_path}/hemoscan.db"
        upgrade(url)
        settings = load_settings(data_dir=tmp_path, database_url=url, heatmaps=heatmaps)
        return Runtime(
            settings=settings,
            loaded=SimpleNamespace(
                threshold=0.5, metadata={"version": "t"}, input_size=SIZE, framing="letterbox"
            ),
            gradcam=FakeGradCam(),
            sessions=session_factory(url),
            output=LocalStore(tmp_path / "heatmaps"),
            pool=pool,
            series_stage=SeriesStage(None, 0.5),
            model_batch=4,  # 7 keys: two model calls
            observer=observer,
        )

    with ThreadPoolExecutor(4) as pool:
        yield build


def _job(rt: Runtime, source: Path, keys: list[str]) -> Any:
    with rt.sessions.begin() as session:
        job, _ = jobs.open_job(session, "observed", str(source), {}, "t")
        results.add_scans(session, job.id, [{"object_key": k} for k in keys])
    return job.id


def test_the_observer_gets_one_record_per_scored_image_with_every_stage(
    archive: tuple[Path, list[str]], runtime: Any
) -> None:
    source, keys = archive
    seen: list[BatchTimes] = []
    rt = runtime(HeatmapPolicy.ALL, seen.append)
    summary = process_batch(rt, _job(rt, source, keys), keys)

    assert summary["scored"] == 6 and summary["failed"] == 1
    [batch] = seen
    assert len(batch.images) == 6 and batch.failed == 1 and batch.fetched == 7
    assert (batch.model_calls, batch.model_images) == (2, 6)
    for image in batch.images:
        assert set(image.wall_ms) == set(image.cpu_ms) == set(IMAGE_STAGES)
        assert all(image.wall_ms[s] > 0 for s in IMAGE_STAGES)
        assert all(image.cpu_ms[s] >= 0 for s in IMAGE_STAGES)
        assert image.objects_written == HEATMAP_OBJECTS
    # Every overlay, and every map in the batch's one pack.
    assert batch.packs_written == 1
    assert batch.objects_written == 6 * HEATMAP_OBJECTS + 1
    assert set(batch.wall_ms) == set(batch.cpu_ms) == set(BATCH_STAGES)
    assert batch.wall_ms["total"] >= batch.wall_ms["model"] + batch.wall_ms["commit"]
    assert all(batch.wall_ms[s] > 0 for s in ("lookup", "commit"))


def test_maps_policy_writes_every_raw_map_and_overlays_of_flagged_images_only(
    archive: tuple[Path, list[str]], runtime: Any
) -> None:
    """HEMOSCAN_HEATMAPS=maps: one pack holding every image's map, an overlay per flagged
    image; the rows say which (no overlay URI where none was written, each map's row of the
    pack) and the output holds exactly those."""
    source, keys = archive
    seen: list[BatchTimes] = []
    rt = runtime(HeatmapPolicy.MAPS, seen.append)
    job_id = _job(rt, source, keys)
    process_batch(rt, job_id, keys)

    [batch] = seen
    with rt.sessions() as session:
        rows = session.execute(
            select(
                Prediction.label,
                Prediction.overlay_uri,
                Prediction.raw_map_uri,
                Prediction.raw_map_index,
            ).where(Prediction.job_id == job_id)
        ).all()
    flagged = sum(1 for label, *_ in rows if label)
    assert 0 < flagged < len(rows) == 6  # the fake model's probabilities straddle 0.5
    assert len({raw for _, _, raw, _ in rows}) == 1 and rows[0][2].endswith(".maps.npz")
    assert sorted(index for *_, index in rows) == list(range(6))
    assert all(bool(overlay) == label for label, overlay, *_ in rows)
    assert batch.objects_written == 1 + flagged
    written = [o.key for o in rt.output.list()]
    assert len(written) == 1 + flagged
    assert sum(k.endswith(".overlay.png") for k in written) == flagged


def test_skipped_heatmaps_still_give_every_stage_and_rows_keep_their_timings(
    archive: tuple[Path, list[str]], runtime: Any
) -> None:
    source, keys = archive
    seen: list[BatchTimes] = []
    rt = runtime(HeatmapPolicy.NONE, seen.append)
    job_id = _job(rt, source, keys)
    process_batch(rt, job_id, keys)

    [batch] = seen
    assert len(batch.images) == 6 and batch.objects_written == 0
    for image in batch.images:
        assert image.wall_ms["render"] == image.wall_ms["upload"] == 0.0
        assert image.wall_ms["fetch"] > 0 and image.wall_ms["decode"] > 0
    with rt.sessions() as session:
        rows = session.scalars(select(Prediction.timings).where(Prediction.job_id == job_id))
        assert all(set(t) == {"fetch_ms", "decode_ms", "model_ms"} for t in rows)


def test_without_an_observer_nothing_is_recorded_and_rows_are_as_before(archive, runtime):
    source, keys = archive
    rt = runtime(HeatmapPolicy.ALL, None)
    job_id = _job(rt, source, keys)
    assert process_batch(rt, job_id, keys)["scored"] == 6
    with rt.sessions() as session:
        rows = list(session.scalars(select(Prediction.timings).where(Prediction.job_id == job_id)))
    expected = {"fetch_ms", "decode_ms", "render_ms", "upload_ms", "model_ms"}
    assert len(rows) == 6 and all(set(t) == expected for t in rows)


def test_a_failing_observer_does_not_fail_the_batch(archive, runtime):
    source, keys = archive

    def broken(times: BatchTimes) -> None:
        raise RuntimeError("observer bug")

    rt = runtime(HeatmapPolicy.ALL, broken)
    assert process_batch(rt, _job(rt, source, keys), keys)["scored"] == 6


def test_image_times_fills_stages_that_did_not_run():
    item = Item(key="k", scan_id=3, shown="k#1", timings={"fetch_ms": 1.5, "decode_ms": 2.0})
    item.cpu_ms = {"fetch": 0.5, "decode": 1.0}
    times = image_times(item)
    assert times.wall_ms == {"fetch": 1.5, "decode": 2.0, "render": 0.0, "upload": 0.0}
    assert times.cpu_ms == {"fetch": 0.5, "decode": 1.0, "render": 0.0, "upload": 0.0}
    assert (times.scan_id, times.key, times.objects_written) == (3, "k#1", 0)
