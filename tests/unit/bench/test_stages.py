"""The bench's figures from the pipeline's timing records, on synthetic records (no services):
``bench.stages.aggregate`` (worker CPU outside the model) and the summary table."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from bench import stages, summary
from bench.producer_rate import TimedSender
from workers.timing import HEATMAP_OBJECTS, BatchTimes, ImageTimes


def _image(i: int, written: bool = True) -> ImageTimes:
    cpu = {"fetch": 1.0, "decode": 2.0, "render": 3.0 if written else 0.0}
    cpu["upload"] = 4.0 if written else 0.0
    return ImageTimes(
        scan_id=i,
        key=f"k{i}",
        wall_ms={stage: 2 * ms for stage, ms in cpu.items()},
        cpu_ms=cpu,
        objects_written=HEATMAP_OBJECTS if written else 0,
    )


def _batch(images: list[ImageTimes], failed: int = 0) -> BatchTimes:
    return BatchTimes(
        job_id=uuid.uuid4(),
        images=tuple(images),
        fetched=len(images) + failed,
        failed=failed,
        model_calls=1,
        model_images=len(images),
        packs_written=1,
        wall_ms={"lookup": 4.0, "model": 40.0, "pack": 1.0, "pack_put": 2.0, "commit": 6.0}
        | {"total": 80.0},
        cpu_ms={"lookup": 1.0, "model": 2.0, "pack": 0.5, "pack_put": 1.5, "commit": 3.0}
        | {"total": 30.0},
    )


def test_aggregate_gives_per_image_stage_figures_and_requests():
    batches = [_batch([_image(0), _image(1)]), _batch([_image(2), _image(3, written=False)], 1)]
    out = stages.aggregate(batches)

    assert out["images"] == 4 and out["batches"] == 2 and out["failed"] == 1
    cpu = out["stages_cpu_ms_per_image"]
    assert cpu == {
        "database": 2.0,
        "decode": 2.0,
        "fetch": 1.0,
        "render+encode": 2.5,  # (3 x 3.0 + 2 packs x 0.5) / 4
        "upload": 3.75,  # (3 x 4.0 + 2 x 1.5) / 4
    }
    assert out["stages_wall_ms_per_image"]["upload"] == 7.0
    assert out["outside_model_cpu_ms_per_image"] == pytest.approx(sum(cpu.values()))
    assert out["task_thread_cpu_ms_per_image"] == 15.0
    assert out["model_task_thread_cpu_ms_per_image"] == 1.0
    assert (out["model_wall_ms"], out["batches_wall_ms"], out["model_calls"]) == (80.0, 160.0, 2)
    # 3 overlays and 2 packs over 4 images
    assert out["object_store_requests_per_image"] == {"get": 1.25, "put": 1.25, "put_packs": 0.5}


def test_aggregate_refuses_batches_that_scored_nothing():
    with pytest.raises(ValueError, match="no image"):
        stages.aggregate([_batch([], failed=3)])


def test_the_recorder_keeps_every_batch():
    recorder = stages.Recorder()
    batch = _batch([_image(0)])
    recorder(batch)
    recorder(batch)
    assert recorder.batches == [batch, batch]


def test_the_summary_table_shows_the_stage_figures(capsys):
    report = {
        "model_note": "synthetic",
        "load_at_start": "0.1",
        "load_at_end": "0.2",
        "cpus": 2,
        "raw": {"images_per_s": 200.0, "cpu_ms_per_image": 7.0, "batch": 16},
        "embedded": {"images_per_s": 100.0, "cpu_ms_per_image": 10.0},
        "worker_cpu": stages.aggregate([_batch([_image(0), _image(1)])]),
    }
    summary.ratios(report)
    assert report["ratios"]["embedded_over_raw"] == 0.5
    assert report["cpu_bounds"]["embedded_max_images_per_s"] == 200.0
    rows = {name: value for name, value, _ in summary.table_rows(report)}
    assert (
        rows["worker CPU outside model"] == report["worker_cpu"]["outside_model_cpu_ms_per_image"]
    )
    # The batch's pack: its encoding in render+encode, its put with the two overlays' puts.
    assert rows["  render+encode"] == 3.25 and rows["  database"] == 2.0
    assert rows["  object store GET / PUT"] == "1.0 / 1.5"
    assert rows["PIPELINE distributed"] is None  # not measured in this report
    summary.print_table(report)
    assert "worker CPU outside model" in capsys.readouterr().out


def test_the_timed_sender_passes_sends_on_and_sums_their_time() -> None:
    class Inner:
        in_process = False

        def __init__(self) -> None:
            self.sent: list[tuple[str, list[str], int]] = []
            self.closed = False

        def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> None:
            self.sent.append((job_id, list(keys), pass_number))

        def close(self) -> None:
            self.closed = True

    inner = Inner()
    sender = TimedSender(inner)
    sender.send("job", ["a", "b"], 2)
    sender.close()
    assert inner.sent == [("job", ["a", "b"], 2)] and inner.closed
    assert sender.busy_s >= 0.0 and not sender.in_process
