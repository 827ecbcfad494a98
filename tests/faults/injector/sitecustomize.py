"""Fault injection for hemoscan's fault tests, loaded into worker processes via PYTHONPATH.

Nothing in the product knows about this file. The fault tests put this folder on PYTHONPATH
and set one of the variables below; Python then imports this module at start-up in every
process, and it hooks Celery's ``task_prerun`` signal, so only worker pool processes act:

HEMOSCAN_FAULT_KILL_ONCE=FILE  SIGKILL the pool process while it packs the first batch's maps (after
                               flagged images' overlays may be written, before any row is
                               committed), once: FILE records that the kill happened.
HEMOSCAN_FAULT_POISON=A,B      SIGKILL the pool process when it loads an object whose key holds
                               one of the comma-separated texts (a decoder that crashes the
                               interpreter): a batch that kills its worker on every delivery.
HEMOSCAN_FAULT_KILL_PRERUN=DIR:N  SIGKILL the pool process as a task starts, before the task
                               body runs, the first N times (across processes: DIR/kill-<i>
                               records each kill).
HEMOSCAN_FAULT_HOLD=DIR        the first batch a pool process runs writes DIR/started and waits
                               (at most 120 s) for DIR/release: the test acts while the batch is
                               known to be in flight, with no sleeps and no races.
"""

import os

if any(name.startswith("HEMOSCAN_FAULT_") for name in os.environ):
    import signal
    import time
    from pathlib import Path

    from celery.signals import task_prerun

    _state = {"held": False}

    def _die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def _kill_before_body(spec: str) -> None:
        folder, _, times = spec.rpartition(":")
        for i in range(int(times)):
            try:
                fd = os.open(Path(folder, f"kill-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.close(fd)
            _die()

    @task_prerun.connect(weak=False)
    def _inject(sender=None, args=None, **_):  # type: ignore[no-untyped-def]
        prerun = os.environ.get("HEMOSCAN_FAULT_KILL_PRERUN")
        if prerun:
            _kill_before_body(prerun)
        poison = [p for p in os.environ.get("HEMOSCAN_FAULT_POISON", "").split(",") if p]
        if poison:
            import workers.pipeline as pipeline

            load = getattr(pipeline._load, "__wrapped__", pipeline._load)

            def load_or_die(rt, store, item, *a, **kw):  # type: ignore[no-untyped-def]
                # Like a decoder that crashes the interpreter on one particular object.
                if any(p in item.key for p in poison):
                    _die()
                return load(rt, store, item, *a, **kw)

            load_or_die.__wrapped__ = load  # type: ignore[attr-defined]
            pipeline._load = load_or_die
        marker = os.environ.get("HEMOSCAN_FAULT_KILL_ONCE")
        if marker and not Path(marker).exists():
            import workers.pipeline as pipeline

            # Every batch packs its maps (an overlay is rendered only for flagged images under
            # the default HEMOSCAN_HEATMAPS=maps): the kill comes whatever is flagged, after
            # the flagged images' overlays were queued and before any row is committed.
            original = pipeline.maps_npz

            def render_then_die(*a, **kw):  # type: ignore[no-untyped-def]
                if not Path(marker).exists():
                    Path(marker).write_text(str(os.getpid()))
                    _die()
                return original(*a, **kw)

            pipeline.maps_npz = render_then_die
        hold = os.environ.get("HEMOSCAN_FAULT_HOLD")
        if hold and not _state["held"]:
            _state["held"] = True
            Path(hold, "started").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not Path(hold, "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
