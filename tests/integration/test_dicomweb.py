"""A PACS as source and sink (issue 17): phantom studies go into the real Orthanc over STOW-RS,
`hemoscan scan dicomweb+http://...` lists them with QIDO-RS, two real Celery workers retrieve
them with WADO-RS and score them, the series verdicts land in PostgreSQL, and `--write-back`
sends each series' SR and Parametric Maps back into its study with STOW-RS.
"""

from __future__ import annotations

import uuid

import highdicom as hd
import numpy as np
import pydicom
import pytest
from sqlalchemy import create_engine, text

from hemoscan.dicomweb import instance_key
from hemoscan.privacy import pseudonym
from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from tests.utils.pacs import pacs_client, stow_phantom_studies
from tests.utils.stack import flower, flower_tasks, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pacs_env(env: dict[str, str], orthanc, password: str | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        **env,
        "HEMOSCAN_DICOMWEB_USERNAME": orthanc.user,
        "HEMOSCAN_DICOMWEB_PASSWORD": password or orthanc.password,
    }


def _probability(sr: pydicom.Dataset) -> tuple[float, str]:
    """The SR's finding, read with highdicom: its probability and Present/Absent."""
    [group] = hd.sr.MeasurementReport.from_sequence([sr]).get_image_measurement_groups()
    [probability] = [m.value for m in group.get_measurements() if m.name.meaning == "Probability"]
    [finding] = [
        q.value.meaning  # type: ignore[union-attr]
        for q in group.get_qualitative_evaluations()
        if "hemorrhage" in q.name.meaning.lower()
    ]
    return float(probability), finding


def test_a_pacs_is_screened_over_dicomweb_and_gets_its_results_back(dist_env, orthanc, tmp_path):
    """Two of three studies match the filters (description and date range): every slice of
    them is scored by two workers, each series gets one final verdict, and QIDO-RS of each
    source study then finds its SR and Parametric Maps, the SR's probability the database's;
    the third study is never listed; no UID in task arguments, Flower, logs, rows or keys."""
    marker = f"hemoscan-test-{uuid.uuid4().hex[:10]}"
    sent = stow_phantom_studies(
        orthanc, tmp_path / "src", 3, seed=53, marker=marker,
        dates=["20240115", "20240120", "20230601"],
    )  # fmt: skip
    chosen = [ds for ds in sent if ds.StudyDate.startswith("2024")]
    other = [ds for ds in sent if not ds.StudyDate.startswith("2024")]
    assert chosen and other
    env = {
        **pacs_env(dist_env, orthanc),
        "HEMOSCAN_HEAD_GATE": "false",  # 64-pixel phantoms: every slice is scored
        "HEMOSCAN_BATCH_SIZE": "16",
    }
    source = f"dicomweb+{orthanc.dicomweb}"
    # A wildcard match (sent as *, not %2A, which the server would take literally).
    wildcard = "*" + marker.removeprefix("hemoscan-")
    args = ["scan", source, "--job", "pacs", "--study-description", wildcard,
            "--study-date", "20240101-20240131", "--write-back"]  # fmt: skip
    with flower(env, tmp_path) as url, workers(env, tmp_path, 2) as pool:
        scan = run_cli(args, env, timeout=600)
        tasks, details = flower_tasks(url)
        logs = [w.log() for w in pool]
    said = " ".join((scan.stdout + scan.stderr).split())

    # Every selected slice scored once, nothing else listed.
    secret = env["HEMOSCAN_PSEUDONYM_KEY"].encode()
    expected = {
        instance_key(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, secret)
        for ds in chosen
    }
    engine = create_engine(env["HEMOSCAN_DATABASE_URL"])
    with engine.connect() as conn:
        job = conn.execute(text("SELECT id FROM jobs WHERE name = 'pacs'")).scalar_one()
        keys = set(conn.execute(text("SELECT object_key FROM scans WHERE job_id = :j"), {"j": job}).scalars())  # fmt: skip
        scored = conn.execute(
            text("SELECT count(*) FROM predictions p JOIN scans s ON s.id = p.scan_id "
                 "WHERE s.job_id = :j"), {"j": job},
        ).scalar_one()  # fmt: skip
        failed = conn.execute(
            text("SELECT count(*) FROM failures f JOIN scans s ON s.id = f.scan_id "
                 "WHERE s.job_id = :j"), {"j": job},
        ).scalar_one()  # fmt: skip
        verdicts = {
            key: (prob, label, state)
            for key, prob, label, state in conn.execute(
                text("SELECT series_key, probability, label, state FROM series WHERE job_id = :j"),
                {"j": job},
            )
        }
        rows = [
            str(row)
            for table in ("jobs", "scans", "predictions", "failures", "series", "studies")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    engine.dispose()
    assert keys == expected, "exactly the instances the filters select"
    assert (scored, failed) == (len(chosen), 0)
    assert all("succeeded" in log for log in logs), "both workers scored batches"
    series_uids = sorted({ds.SeriesInstanceUID for ds in chosen})
    assert set(verdicts) == {pseudonym("series", uid, secret) for uid in series_uids}
    assert all(state == "final" for _, _, state in verdicts.values())

    # The results are back in each source study, found by QIDO-RS, the SR's figure the row's.
    pacs = pacs_client(orthanc)
    stored = 0
    for study_uid in sorted({ds.StudyInstanceUID for ds in chosen}):
        by_modality: dict[str, list[dict]] = {}
        for series in pacs.search_for_series(study_uid):
            ds = pydicom.Dataset.from_json(series)
            by_modality.setdefault(ds.Modality, []).append(
                pacs.search_for_instances(study_uid, ds.SeriesInstanceUID)
            )
        assert set(by_modality) == {"CT", "SR", "OT"}, by_modality.keys()
        [[sr_found]] = by_modality["SR"]
        sr_ds = pydicom.Dataset.from_json(sr_found)
        sr = pacs.retrieve_instance(study_uid, sr_ds.SeriesInstanceUID, sr_ds.SOPInstanceUID)
        probability, finding = _probability(sr)
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        source_series = evidence.SeriesInstanceUID
        row_probability, label, _ = verdicts[pseudonym("series", source_series, secret)]
        assert probability == pytest.approx(row_probability, abs=1e-6)
        assert finding == ("Present" if label else "Absent")
        maps = [i for found in by_modality["OT"] for i in found]
        assert maps, "a Parametric Map of each key slice"
        stored += 1 + len(maps)
    assert f"sent {stored} object(s) into their source studies" in said
    for ds in other:  # the study outside the date range got nothing
        found = pacs.search_for_series(ds.StudyInstanceUID)
        assert {pydicom.Dataset.from_json(s).Modality for s in found} == {"CT"}

    settings = load_settings(s3_endpoint_url=env["HEMOSCAN_S3_ENDPOINT_URL"])
    out_keys = [o.key for o in open_store(env["HEMOSCAN_OUTPUT_LOCATION"], settings).list()]
    assert any(k.endswith(".sr.dcm") for k in out_keys), "the DICOM results in the output too"
    haystacks = {
        "worker logs": "\n".join(logs),
        "scan output": said,
        "flower tasks": str(tasks) + "".join(details),
        "database rows": "\n".join(rows),
        "output keys": "\n".join(out_keys),
    }
    uids = {u for ds in sent for u in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)}  # fmt: skip
    for where, haystack in haystacks.items():
        leaked = [u for u in uids if u in haystack]
        assert not leaked, f"{len(leaked)} UID(s) in {where}"
    assert tasks, "Flower saw the tasks"


def test_a_pacs_that_is_down_or_refuses_the_credentials_stops_the_scan_clearly(
    base_env, orthanc, tmp_path
):
    """Fault: no server on the port; the right user with a wrong password; credentials in the
    URL. Checked: `hemoscan scan` exits non-zero at once with a one-line reason naming the
    cause, and creates no job."""
    from tests.utils.stack import free_port

    down = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web"
    cases = {
        down: (pacs_env(base_env, orthanc), "does not answer"),
        f"dicomweb+{orthanc.dicomweb}": (
            pacs_env(base_env, orthanc, password="not-the-password"),
            "refused the credentials (HTTP 401)",
        ),
        f"dicomweb+http://{orthanc.user}:{orthanc.password}@127.0.0.1:8042/dicom-web": (
            base_env,
            "must not carry credentials",
        ),
    }
    for source, (env, reason) in cases.items():
        proc = run_cli(["scan", source, "--job", "refused"], env, timeout=120, check=False)
        said = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode != 0 and reason in said, said
        assert "Traceback" not in said
        assert orthanc.password not in said
    listed = run_cli(["status"], base_env)
    assert "refused" not in listed.stdout


def test_a_selection_that_matches_nothing_says_so_and_does_not_wait(dist_env, orthanc):
    """Fault: filters that select no study, with --wait and no worker running. Checked: the
    scan ends at once (exit 0) saying the source listed nothing, instead of waiting for ever."""
    marker = f"nothing-matches-{uuid.uuid4().hex[:10]}"
    env = pacs_env(dist_env, orthanc)
    args = ["scan", f"dicomweb+{orthanc.dicomweb}", "--study-description", marker, "--wait"]
    proc = run_cli(args, env, timeout=60)
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "listed no objects" in said and "sent 0 of 0" in said


def test_result_objects_read_their_sources_attributes_without_the_pixels(orthanc, tmp_path):
    """`--write-back` and `hemoscan dicom-results` copy a key slice's patient, study and
    geometry attributes into the SR and Parametric Map: from a DICOMweb source they come from
    WADO-RS /metadata (the instance's pixels never travel), with the values the instance holds."""
    from hemoscan.dicomweb import DicomwebStore
    from hemoscan.privacy import seal_locator
    from hemoscan.reporting.dicom_export import source_header

    marker = f"hemoscan-test-{uuid.uuid4().hex[:10]}"
    sent = stow_phantom_studies(orthanc, tmp_path / "src", 1, seed=57, marker=marker)
    ds = sent[len(sent) // 2]
    secret = b"a-test-pseudonym-key-of-32-bytes!"
    settings = load_settings(
        dicomweb_username=orthanc.user, dicomweb_password=orthanc.password, data_dir=tmp_path
    )
    store = open_store(f"dicomweb+{orthanc.dicomweb}", settings)
    assert isinstance(store, DicomwebStore)
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    key = instance_key(*uids, secret)
    header = source_header(store, key, seal_locator(uids, key, secret), secret)
    assert "PixelData" not in header
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID",
                    "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID", "Rows", "Columns",
                    "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient",
                    "SliceThickness", "StudyDate", "AccessionNumber"):  # fmt: skip
        assert header.get(keyword) == ds.get(keyword), keyword
    # What the write-back builds from it is what it builds from the whole instance.
    from hybrid_model.dicom_results import SeriesResult, heatmap_map

    result = SeriesResult(0.9, True, 0.5, "series_stage", "v", "phantoms", key_slices=(0,))
    cam = np.zeros((16, 16), np.float32)
    cam[5, 9] = 1.0
    from_metadata = heatmap_map(header, cam, result, entropy=["j", "s"])
    from_instance = heatmap_map(ds, cam, result, entropy=["j", "s"])
    np.testing.assert_array_equal(from_metadata.pixel_array, from_instance.pixel_array)
    assert from_metadata.SOPInstanceUID == from_instance.SOPInstanceUID
    assert from_metadata.FrameOfReferenceUID == from_instance.FrameOfReferenceUID
