"""The product end to end with real parts: SeaweedFS -> producer -> Redis -> two Celery worker
processes -> heatmaps in SeaweedFS -> rows in PostgreSQL, watched by Flower; and the same flow
in the embedded mode (SQLite and a folder) through the same task code."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from hybrid_model.render import raw_map_npy, read_map
from schema.models import Failure, Job, Prediction, Scan
from tests.utils.archive import make_phantoms, upload_archive
from tests.utils.stack import flower, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_IMAGES = 200


def _flower_get(url: str, path: str, auth: bool = True) -> object:
    request = urllib.request.Request(f"{url}{path}")
    if auth:
        token = base64.b64encode(b"admin:flower-test-pw").decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _rows(db_url: str, job_name: str):  # type: ignore[no-untyped-def]
    """The job's predictions (key, probability, overlay, label, raw map, its row of the pack),
    failures (key -> reason), and how many
    times each prediction row was written (key -> writes; 1: scored once)."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        job_id = conn.scalar(select(Job.id).where(Job.name == job_name))
        preds = conn.execute(
            select(
                Scan.object_key,
                Prediction.probability,
                Prediction.overlay_uri,
                Prediction.label,
                Prediction.raw_map_uri,
                Prediction.raw_map_index,
            )
            .join(Prediction, Prediction.scan_id == Scan.id)
            .where(Prediction.job_id == job_id)
        ).all()
        fails = dict(
            conn.execute(
                select(Scan.object_key, Failure.reason)
                .join(Failure, Failure.scan_id == Scan.id)
                .where(Failure.job_id == job_id)
            ).all()
        )
        writes = dict(
            conn.execute(
                select(Scan.object_key, Prediction.writes)
                .join(Prediction, Prediction.scan_id == Scan.id)
                .where(Prediction.job_id == job_id)
            ).all()
        )
    engine.dispose()
    return preds, fails, writes


def _updates(db_url: str, job_name: str, fn):  # type: ignore[no-untyped-def]
    """``fn`` (min or max) of updated_at over the job's predictions and failures."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        job_id = conn.scalar(select(Job.id).where(Job.name == job_name))
        values = [
            conn.scalar(select(fn(table.updated_at)).where(table.job_id == job_id))
            for table in (Prediction, Failure)
        ]
    engine.dispose()
    return values


def _latest_update(db_url: str, job_name: str):  # type: ignore[no-untyped-def]
    return max(_updates(db_url, job_name, func.max))


def _oldest_update(db_url: str, job_name: str):  # type: ignore[no-untyped-def]
    return min(_updates(db_url, job_name, func.min))


def test_distributed_scan_with_two_workers_and_flower(dist_env, tmp_path):
    settings = load_settings(
        s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"], data_dir=tmp_path
    )
    source = f"s3://{dist_env['HEMOSCAN_TEST_BUCKET']}/archive"
    store = open_store(source, settings)
    files = make_phantoms(tmp_path / "phantoms", N_IMAGES)
    bad = upload_archive(store, files)
    job = f"it-{uuid.uuid4().hex[:6]}"

    with flower(dist_env, tmp_path) as flower_url, workers(dist_env, tmp_path, 2) as procs:
        out = run_cli(["scan", source, "--job", job, "--wait"], dist_env, timeout=600)
        assert "job done" in out.stderr, out.stderr[-2000:]

        # Flower refuses without credentials and, with them, saw both workers and every task.
        with pytest.raises(urllib.error.HTTPError) as denied:
            _flower_get(flower_url, "/api/workers", auth=False)
        assert denied.value.code == 401
        seen_workers = _flower_get(flower_url, "/api/workers?refresh=1")
        assert {w.name for w in procs} <= set(seen_workers)  # type: ignore[arg-type]
        tasks = _flower_get(flower_url, "/api/tasks?state=SUCCESS")
        batches = -(-(N_IMAGES + len(bad)) // 16)
        assert len(tasks) == batches  # type: ignore[arg-type]
        hosts = {t["worker"] for t in tasks.values()}  # type: ignore[union-attr]
        assert hosts == {w.name for w in procs}, "both workers should have scored batches"

        preds, fails, writes = _rows(dist_env["HEMOSCAN_DATABASE_URL"], job)
        assert len(preds) == N_IMAGES
        assert writes == {f"ct/{p.name}": 1 for p in files}, "each image scored once"
        assert fails == bad
        out_store = open_store(f"s3://{dist_env['HEMOSCAN_TEST_BUCKET']}", settings)
        # The default HEMOSCAN_HEATMAPS=maps: every raw map (one pack per task), overlays of
        # flagged images only.
        assert -(-N_IMAGES // 16) <= len({p[4] for p in preds}) <= batches
        assert len({(p[4], p[5]) for p in preds}) == len(preds), "one pack row per image"
        for _, probability, overlay_uri, label, raw_uri, row in preds:
            assert 0.0 <= probability <= 1.0
            raw, size, frame = read_map(out_store.get(raw_uri.split("/", 3)[3]), row)
            assert raw.ndim == 2 and raw.shape[0] < size[0] and 0 <= raw.min()
            assert frame is not None, "each map's frame travels with it"
            assert bool(overlay_uri) == label
            if overlay_uri:
                key = overlay_uri.split("/", 3)[3]
                png = cv2.imdecode(np.frombuffer(out_store.get(key), np.uint8), cv2.IMREAD_COLOR)
                assert png is not None and png.shape[2] == 3

        # Running the same job again sends nothing new.
        again = run_cli(["scan", source, "--job", job], dist_env)
        assert f"sent 0 of {N_IMAGES + len(bad)} listed" in again.stderr

        # --rescore --wait scores everything again and waits for THIS pass (the job's counts
        # were complete before it began): every row is rewritten by the time it returns.
        before = _latest_update(dist_env["HEMOSCAN_DATABASE_URL"], job)
        rescored = run_cli(["scan", source, "--job", job, "--rescore", "--wait"], dist_env, 600)
        assert f"sent {N_IMAGES + len(bad)} of" in rescored.stderr
        text = " ".join(rescored.stderr.split())
        assert f"job done: {N_IMAGES} scored" in text and f"{len(bad)} failed" in text
        assert _oldest_update(dist_env["HEMOSCAN_DATABASE_URL"], job) > before
        _, _, writes = _rows(dist_env["HEMOSCAN_DATABASE_URL"], job)
        assert writes == {f"ct/{p.name}": 2 for p in files}, "scored once in each pass"

    status = run_cli(["status", job], dist_env).stdout
    assert "unsupported" in status and "empty" in status and "unreadable" in status


def test_embedded_scan_of_a_folder(base_env, tmp_path):
    folder = tmp_path / "archive"
    files = make_phantoms(tmp_path / "phantoms", 60)
    bad = upload_archive(open_store(folder, load_settings()), files)
    out = run_cli(["scan", str(folder), "--job", "embedded"], base_env)
    assert "scored 63 image(s)" in out.stderr, out.stderr[-2000:]
    db_url = f"sqlite:///{tmp_path}/data/hemoscan.db"
    preds, fails, writes = _rows(db_url, "embedded")
    assert writes == {f"ct/{p.name}": 1 for p in files}, "each image scored once"
    assert len(preds) == 60 and fails == bad
    for _, _, overlay_uri, label, raw_uri, row in preds:
        assert read_map(Path(raw_uri).read_bytes(), row)[0].ndim == 2
        assert bool(overlay_uri) == label
        assert not overlay_uri or cv2.imread(overlay_uri) is not None
    again = run_cli(["scan", str(folder), "--job", "embedded"], base_env)
    assert "scored 0 image(s)" in again.stderr
    assert _rows(db_url, "embedded")[2] == writes, "the second run rewrote a row"
    csv_out = run_cli(["results", "embedded", "--csv"], base_env).stdout.splitlines()
    assert csv_out[0].startswith("object_key,slice,probability") and len(csv_out) == 61


def test_embedded_series_from_a_manifest_column_and_from_folders(base_env, tmp_path):
    """PNG slices of one flat folder grouped into series by a manifest's series column (the
    values never reach the database: only their pseudonyms), and a folder of PNGs as a series
    without one; every series ends final, its slices all counted."""
    from sqlalchemy import create_engine, text

    files = [p for p in make_phantoms(tmp_path / "phantoms", 16) if p.suffix == ".png"]
    flat, nested = tmp_path / "archive" / "flat", tmp_path / "archive" / "exam-9"
    flat.mkdir(parents=True)
    nested.mkdir()
    rows = ["key,label,series"]
    for i, p in enumerate(files):
        if i < 6:
            (flat / p.name).write_bytes(p.read_bytes())
            rows.append(f"flat/{p.name},,patient-{i % 2}-head")
        else:
            (nested / p.name).write_bytes(p.read_bytes())
            rows.append(f"exam-9/{p.name},,")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    env = {**base_env, "HEMOSCAN_HEAD_GATE": "false"}  # the tiny 2-D phantoms: score them all
    run_cli(["scan", str(tmp_path / "archive"), "--job", "m", "--manifest", str(manifest)], env)
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    with engine.connect() as conn:
        series = conn.execute(
            text("SELECT source, slice_count, state FROM series ORDER BY source, slice_count")
        ).all()
        dump = "\n".join(
            str(r)
            for t in ("scans", "series", "studies")
            for r in conn.execute(text(f"SELECT * FROM {t}"))
        )
    engine.dispose()
    assert [tuple(r) for r in series] == [
        ("folder", len(files) - 6, "final"),
        ("manifest", 3, "final"),
        ("manifest", 3, "final"),
    ]
    assert "patient-" not in dump and "exam-9/" in dump  # keys stay; series names do not
    listed = run_cli(["results", "m", "--series", "--csv"], env).stdout.splitlines()
    assert len(listed) == 4 and listed[0].startswith("study,series,source")


def test_embedded_series_by_image_makes_each_unrelated_export_its_own_series(base_env, tmp_path):
    """A flat folder of unrelated slices (the Kaggle head_ct/ layout) scanned with
    ``--series-by image``: one final series (and study) per image, each of one slice, where the
    default makes the whole folder one series."""
    from sqlalchemy import create_engine, text

    files = [p for p in make_phantoms(tmp_path / "phantoms", 10) if p.suffix == ".png"]
    flat = tmp_path / "archive" / "head_ct"
    flat.mkdir(parents=True)
    for p in files:
        (flat / p.name).write_bytes(p.read_bytes())
    env = {**base_env, "HEMOSCAN_HEAD_GATE": "false"}
    run_cli(["scan", str(tmp_path / "archive"), "--job", "folder"], env)
    run_cli(["scan", str(tmp_path / "archive"), "--job", "image", "--series-by", "image"], env)
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    query = text(
        "SELECT s.source, s.slice_count, s.state FROM series s JOIN jobs j ON j.id = s.job_id "
        "WHERE j.name = :job"
    )
    with engine.connect() as conn:
        by_folder = [tuple(r) for r in conn.execute(query, {"job": "folder"})]
        by_image = [tuple(r) for r in conn.execute(query, {"job": "image"})]
        studies = conn.execute(
            text(
                "SELECT count(DISTINCT s.study_id) FROM series s JOIN jobs j ON j.id = s.job_id "
                "WHERE j.name = 'image'"
            )
        ).scalar()
    engine.dispose()
    assert by_folder == [("folder", len(files), "final")]
    assert by_image == [("image", 1, "final")] * len(files) and studies == len(files)


def test_a_head_framing_model_is_served_its_frames_and_they_travel_with_its_maps(
    base_env, tmp_path
):
    """A model trained with ``--framing head`` sees each slice as a square around the head: the
    worker frames the slices so, stores each map's frame in the pack, and `hemoscan heatmap`
    draws the overlay again through that frame (the same overlay the worker wrote)."""
    from sqlalchemy import text

    from hybrid_model.preprocess import decode_native, head_frame
    from tests.utils.archive import make_series, make_tiny_model

    model = make_tiny_model(tmp_path / "head.keras", framing="head")
    records = make_series(tmp_path / "src", 1, seed=78, size=128)
    archive = tmp_path / "archive"
    archive.mkdir()
    picked = [Path(r["file"]) for r in records][len(records) // 3 :: 4][:3]
    for path in picked:
        (archive / path.name).write_bytes(path.read_bytes())
    env = {
        **base_env,
        "HEMOSCAN_MODEL_PATH": str(model),
        "HEMOSCAN_HEAD_GATE": "false",
        "HEMOSCAN_HEATMAPS": "all",
    }
    run_cli(["scan", str(archive), "--job", "hf"], env)
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.object_key, p.overlay_uri, p.raw_map_uri, p.raw_map_index "
                "FROM predictions p JOIN scans s ON s.id = p.scan_id"
            )
        ).all()
    engine.dispose()
    assert sorted(r[0] for r in rows) == sorted(p.name for p in picked)
    zoomed = 0
    for key, overlay_uri, map_uri, map_index in rows:
        native = decode_native((archive / key).read_bytes(), key, head_gate=False)
        expected = head_frame(native)
        stored = read_map(Path(map_uri).read_bytes(), map_index)
        assert stored.frame == expected
        zoomed += expected.side < max(native.shape[:2])
        out = tmp_path / f"{key}.png"
        run_cli(["heatmap", "hf", key, "--out", str(out)], env)
        again, written = cv2.imread(str(out)), cv2.imread(overlay_uri)
        assert again is not None and written is not None and again.shape == written.shape
        assert np.abs(again.astype(int) - written.astype(int)).max() <= 3
    assert zoomed, "no slice was framed tighter than its letterbox: the test shows nothing"


def test_heatmap_rendered_on_demand_matches_the_written_overlay(base_env, tmp_path):
    """`hemoscan heatmap` draws an image's overlay again from its stored map and its source
    (a DICOM slice, and one slice of a NIfTI volume, which needs --slice); it matches the
    overlay the worker wrote (the stored map is float16: a level or two of difference)."""
    from sqlalchemy import create_engine, text

    from tests.utils.archive import dicom_series_to_nifti, make_series

    records = make_series(tmp_path / "src", 1, seed=77, size=96)
    files = [Path(r["file"]) for r in records]
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "one.dcm").write_bytes(files[len(files) // 2].read_bytes())
    dicom_series_to_nifti(files, archive / "vol.nii.gz")
    # all: an overlay for every image, to compare the drawn ones with
    env = {**base_env, "HEMOSCAN_HEAD_GATE": "false", "HEMOSCAN_HEATMAPS": "all"}
    run_cli(["scan", str(archive), "--job", "h"], env)
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    with engine.connect() as conn:
        overlays = dict(
            conn.execute(
                text(
                    "SELECT s.object_key || ':' || p.slice_index, p.overlay_uri "
                    "FROM predictions p JOIN scans s ON s.id = p.scan_id"
                )
            ).all()
        )
    engine.dispose()
    assert f"vol.nii.gz:{len(files) - 1}" in overlays and "one.dcm:0" in overlays
    for key, extra, written in (
        ("one.dcm", [], overlays["one.dcm:0"]),
        ("vol.nii.gz", ["--slice", "2"], overlays["vol.nii.gz:2"]),
    ):
        out = tmp_path / f"{key}.png"
        done = run_cli(["heatmap", "h", key, "--out", str(out), *extra], env)
        assert "not a diagnosis" in " ".join((done.stdout + done.stderr).split())
        again, stored = cv2.imread(str(out)), cv2.imread(written)
        assert again is not None and again.shape == stored.shape
        assert np.abs(again.astype(int) - stored.astype(int)).max() <= 3
    whole = run_cli(
        ["heatmap", "h", "vol.nii.gz", "--out", str(tmp_path / "x.png")], env, check=False
    )
    assert whole.returncode != 0 and "--slice" in whole.stderr + whole.stdout
    nothing = run_cli(
        ["heatmap", "h", "nope.dcm", "--out", str(tmp_path / "y.png")], env, check=False
    )
    assert nothing.returncode != 0 and "no scored image" in nothing.stderr + nothing.stdout
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()

    # HEMOSCAN_HEATMAPS=maps: overlays of flagged images only; the others are drawn on demand,
    # and the report draws the key slices of flagged series that have none.
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    with engine.connect() as conn:
        probs = sorted(p for (p,) in conn.execute(text("SELECT probability FROM predictions")))
    median = probs[len(probs) // 2]  # a threshold that flags about half the slices
    maps_env = {**env, "HEMOSCAN_HEATMAPS": "maps", "HEMOSCAN_THRESHOLD": repr(median)}
    run_cli(["scan", str(archive), "--job", "hm"], maps_env)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.object_key, p.slice_index, p.label, p.overlay_uri, p.raw_map_uri "
                "FROM predictions p JOIN scans s ON s.id = p.scan_id JOIN jobs j "
                "ON j.id = p.job_id WHERE j.name = 'hm'"
            )
        ).all()
    engine.dispose()
    assert rows and all(raw for *_, raw in rows)
    assert all(bool(overlay) == bool(label) for _, _, label, overlay, _ in rows)
    unflagged = [(key, index) for key, index, label, _, _ in rows if not label]
    assert unflagged and len(unflagged) < len(rows)
    key, index = unflagged[0]
    out = tmp_path / "unflagged.png"
    run_cli(["heatmap", "hm", key, "--out", str(out), "--slice", str(index)], maps_env)
    assert cv2.imread(str(out)) is not None
    # The report's key-slice cells draw the same way where no overlay was written.
    from hemoscan.reporting.html_report import _Images
    from schema.db import session_factory
    from schema.jobs import find_job

    settings = load_settings(
        data_dir=tmp_path / "data", model_path=env["HEMOSCAN_MODEL_PATH"], heatmaps="maps"
    )
    images = _Images(settings, "inline", 0)
    with session_factory(f"sqlite:///{tmp_path}/data/hemoscan.db").begin() as session:
        cell = images.drawn(session, find_job(session, "hm"), key, index, None)
    assert cell.startswith("<img") and images.embedded == 1

    # A row of before packs (0006) points at one image's .npy at the input's size: it is drawn
    # the same way. Turn this row into one, its map enlarged from its row of the pack.
    with engine.begin() as conn:
        pid, uri, row = conn.execute(
            text(
                "SELECT p.id, p.raw_map_uri, p.raw_map_index FROM predictions p "
                "JOIN scans s ON s.id = p.scan_id JOIN jobs j ON j.id = p.job_id "
                "WHERE j.name = 'hm' AND s.object_key = :k AND p.slice_index = :i"
            ),
            {"k": key, "i": index},
        ).one()
        cam, size, _ = read_map(Path(uri).read_bytes(), row)
        old = tmp_path / "old-style.map.npy"
        old.write_bytes(raw_map_npy(cv2.resize(cam, size[::-1], interpolation=cv2.INTER_LINEAR)))
        conn.execute(
            text("UPDATE predictions SET raw_map_uri = :u, raw_map_index = NULL WHERE id = :p"),
            {"u": str(old), "p": pid},
        )
    engine.dispose()
    legacy = tmp_path / "legacy.png"
    run_cli(["heatmap", "hm", key, "--out", str(legacy), "--slice", str(index)], maps_env)
    again, first = cv2.imread(str(legacy)), cv2.imread(str(out))
    assert again.shape == first.shape and np.abs(again.astype(int) - first.astype(int)).max() <= 3


def test_dicom_results_report_each_dicom_series_with_the_verdict_in_the_database(
    base_env, tmp_path
):
    """`hemoscan dicom-results JOB`: a valid SR per DICOM series and a valid Parametric Map per
    key slice (dciodvfy), the map on the slice's grid and frame of reference, the SR's
    probability the
    series row's, its study and key slices the source's, the same UIDs on a second run; a PNG
    folder's series is skipped with its reason; no UID on the command's output."""
    import shutil

    import pydicom
    from sqlalchemy import create_engine, text

    from tests.utils.archive import make_series
    from tests.utils.dciodvfy import dciodvfy

    records = make_series(tmp_path / "src", 2, seed=41, size=64)
    archive = tmp_path / "archive"
    for folder in sorted({Path(r["file"]).parent for r in records}):
        shutil.copytree(folder, archive / folder.name)
    pngs = [p for p in make_phantoms(tmp_path / "png", 6) if p.suffix == ".png"]
    assert pngs
    (archive / "pngs").mkdir()
    for p in pngs:
        shutil.copy(p, archive / "pngs" / p.name)
    sources = {
        ds.SOPInstanceUID: ds
        for ds in (pydicom.dcmread(r["file"], stop_before_pixels=True) for r in records)
    }
    env = {**base_env, "HEMOSCAN_HEAD_GATE": "false"}
    run_cli(["scan", str(archive), "--job", "sr"], env)
    done = run_cli(["dicom-results", "sr", "--out", str(tmp_path / "sr")], env)
    said = " ".join((done.stdout + done.stderr).split())
    assert "wrote 2 DICOM SR file(s)" in said and "skipped 1 series: folder series" in said
    maps = sorted((tmp_path / "sr").glob("*.map*.dcm"))
    assert maps and f"and {len(maps)} Parametric Map(s)" in said
    for f in maps:
        errors, _ = dciodvfy(f)
        assert not errors, "\n".join(errors)
        pm = pydicom.dcmread(f)
        source_uid = pm.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        source = sources[source_uid.ReferencedSOPInstanceUID]
        assert (pm.Rows, pm.Columns) == (source.Rows, source.Columns)
        assert pm.FrameOfReferenceUID == source.FrameOfReferenceUID
        values = pm.pixel_array
        assert values.dtype == np.float32 and 0 <= values.min() and values.max() <= 1
    assert not any(uid in said for uid in sources), "a UID on the command's output"
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    with engine.connect() as conn:
        verdicts = dict(
            conn.execute(
                text("SELECT series_key, probability FROM series WHERE source = 'dicom'")
            ).all()
        )
    engine.dispose()
    files = sorted((tmp_path / "sr").glob("*.sr.dcm"))
    assert {f.name.removesuffix(".sr.dcm") for f in files} == set(verdicts)
    first = {}
    for f in files:
        errors, _ = dciodvfy(f)
        assert not errors, "\n".join(errors)
        sr = pydicom.dcmread(f)
        [probability] = [
            item.MeasuredValueSequence[0].NumericValue
            for group in sr.ContentSequence
            if "ContentSequence" in group
            for g in group.ContentSequence
            for item in g.ContentSequence
            if item.ValueType == "NUM"
        ]
        series_key = f.name.removesuffix(".sr.dcm")
        assert float(probability) == pytest.approx(verdicts[series_key], abs=1e-6)
        refs = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        uids = [r.ReferencedSOPInstanceUID for r in refs.ReferencedSOPSequence]
        assert uids and all(u in sources for u in uids), "key slices of the source series"
        assert sr.StudyInstanceUID == sources[uids[0]].StudyInstanceUID
        first[f.name] = sr.SOPInstanceUID
    run_cli(["dicom-results", "sr", "--out", str(tmp_path / "sr")], env)
    assert {f.name: pydicom.dcmread(f).SOPInstanceUID for f in files} == first
    # Without --out: the output location, under the job's id, the same objects.
    run_cli(["dicom-results", "sr"], env)
    stored = sorted((tmp_path / "data" / "heatmaps").glob("*/dicom/*.sr.dcm"))
    assert {f.name: pydicom.dcmread(f).SOPInstanceUID for f in stored} == first
    assert len(list(stored[0].parent.glob("*.map*.dcm"))) == len(maps)
    # A key slice's row gone since the verdict (an object changed): that series is skipped,
    # with its reason, and the other one still written.
    engine = create_engine(f"sqlite:///{tmp_path}/data/hemoscan.db")
    with engine.begin() as conn:
        stored_keys = conn.execute(
            text("SELECT key_slices FROM series WHERE source = 'dicom' ORDER BY id LIMIT 1")
        ).scalar()
        gone = json.loads(stored_keys)[0]["prediction_id"]
        conn.execute(text("DELETE FROM predictions WHERE id = :p"), {"p": gone})
    engine.dispose()
    again = run_cli(["dicom-results", "sr", "--out", str(tmp_path / "sr2")], env)
    said = " ".join((again.stdout + again.stderr).split())
    assert "wrote 1 DICOM SR file(s)" in said and "key slices changed" in said
