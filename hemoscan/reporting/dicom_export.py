"""``hemoscan dicom-results JOB``: every DICOM series' verdict of a job as a DICOM Structured
Report and its key slices' Grad-CAM maps as Parametric Maps (``hybrid_model.dicom_results``),
written to the output location or a folder.

The report needs the headers of the series' key slices (patient, study, the instances it
references): they are read again from the job's source (a DICOMweb source through the scans'
locators), only those objects, and nothing of
them but what the report carries is kept. Series of PNG folders and NIfTI volumes have no
DICOM study to attach a report to: they are counted as skipped. A key slice whose map was not
stored (``HEMOSCAN_HEATMAPS=none``) or cannot be read gets no map, and is counted. Files are named by the
series' pseudonym, never by a UID, so the output keys show nothing of the source.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from hemoscan.errors import ConfigurationError, ObjectMissing, StorageError
from hemoscan.reporting.heatmap import stored_map
from hemoscan.settings import Settings
from hemoscan.storage import ObjectStore, needs_locator, open_store, read_source, write_atomic
from schema.models import Job
from schema.results import locators
from schema.series import key_slice_locations, series_rows


@dataclass
class Written:
    written: list[str] = field(default_factory=list)  # where each object went
    maps: int = 0  # Parametric Maps written
    maps_missing: int = 0  # key slices without a readable stored map
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> series
    stored: int = 0  # objects sent back into their source studies (STOW-RS)
    series_stored: int = 0  # series whose objects were all sent back
    not_stored: dict[str, int] = field(default_factory=dict)  # STOW-RS failure -> series

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def trained_on(settings: Settings, model_version: str | None) -> str:
    """What the scoring model was trained on, from the configured model's metadata when it
    is the model that scored the job (no TensorFlow: the metadata is read from the file)."""
    from hybrid_model.metadata import ModelLoadError, read_metadata

    try:
        meta = read_metadata(Path(settings.model_path))
    except ModelLoadError:
        return "data this installation does not record (its model file is missing)"
    if str(meta.get("version")) != str(model_version):
        return "data this installation does not record (another model scored this job)"
    if meta.get("phantom_trained") or not meta.get("clinically_valid"):
        return "synthetic head-CT phantoms (not clinically valid)"
    return str(meta.get("training_data") or "data its metadata does not name")


def source_header(store: ObjectStore, key: str, locator: str | None, secret: bytes) -> Any:
    """A key slice's attributes without its pixels, all a result object copies from it: from
    a DICOMweb source its WADO-RS metadata (the pixels never travel), from any other store
    the object read up to its pixels."""
    import pydicom

    from hemoscan.dicomweb import DicomwebStore

    if isinstance(store, DicomwebStore):
        return store.header_located(key, locator, secret)
    return pydicom.dcmread(
        io.BytesIO(read_source(store, key, locator, secret)), stop_before_pixels=True
    )


def write_series_reports(
    session: Session,
    job: Job,
    settings: Settings,
    out: Path | None = None,
    flagged_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
    write_back: bool = False,
) -> Written:
    """One SR per DICOM series of ``job`` with a verdict (flagged ones only with
    ``flagged_only``) and a Parametric Map per key slice with a stored map, to ``out`` (a
    folder) or the output location under ``JOB_ID/dicom/``; with ``write_back`` also sent,
    a series' objects in one STOW-RS request, into the job's DICOMweb source (a failed send
    is counted in ``not_stored`` by its reason; refused credentials stop the command)."""
    import pydicom

    from hemoscan.dicomweb import DicomwebStore
    from hybrid_model.dicom_results import SeriesResult, heatmap_map, series_report

    rows = [s for s, _ in series_rows(session, job.id, positives=flagged_only)]
    source = open_store(job.source_uri, settings)
    if write_back and not isinstance(source, DicomwebStore):
        raise ConfigurationError(
            "--write-back sends results into a DICOMweb source; this job's source is not one"
        )
    secret = settings.effective_pseudonym_key() if needs_locator(source) else b""
    sink = None if out is not None else open_store(settings.effective_output_location, settings)
    key_ids = [k["prediction_id"] for s in rows for k in (s.key_slices or [])]
    locations = key_slice_locations(session, key_ids)
    done = Written()
    outgoing: list[pydicom.Dataset] = []  # the series' objects, for its STOW-RS request

    def write(name: str, ds: pydicom.Dataset) -> None:
        if write_back:
            outgoing.append(ds)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / name, buf.getvalue())
            done.written.append(str(out / name))
        else:
            assert sink is not None
            uri = sink.put(f"{job.id}/dicom/{name}", buf.getvalue(), "application/dicom")
            done.written.append(uri)

    def map_of(prediction_id: int, fetched: dict[str, bytes]):  # type: ignore[no-untyped-def]
        where = locations[prediction_id]
        if not where.raw_map_uri:
            return None
        try:
            return stored_map(settings, where.raw_map_uri, where.raw_map_index, fetched)
        except (StorageError, ValueError):
            return None

    for n, series in enumerate(rows, 1):
        if progress is not None:
            progress(n, len(rows))
        if series.probability is None:
            done.skip("no scored slice")
            continue
        if series.source != "dicom":
            done.skip(f"{series.source} series: no DICOM study to attach a report to")
            continue
        slice_ids = [k["prediction_id"] for k in series.key_slices or []]
        if any(pid not in locations for pid in slice_ids):  # rows replaced since the verdict
            done.skip("its key slices changed since its verdict (scan the job again)")
            continue
        # One key slice per object (the prediction of each key slice's object).
        by_key = {locations[pid].object_key: pid for pid in slice_ids}
        located = locators(session, job.id, list(by_key)) if secret else {}
        try:
            headers = [source_header(source, k, located.get(k), secret) for k in by_key]
        except (StorageError, ObjectMissing):
            done.skip("a key slice is no longer in the source")
            continue
        except pydicom.errors.InvalidDicomError:
            done.skip("a key slice no longer reads as DICOM")
            continue
        if not headers:
            done.skip("no key slice")
            continue
        result = SeriesResult(
            probability=float(series.probability),
            label=bool(series.label),
            threshold=float(series.threshold or 0.0),
            method=series.method or "max_of_slices",
            model_version=series.model_version or "unknown",
            trained_on=trained_on(settings, series.model_version),
            key_slices=tuple(range(len(headers))),
        )
        entropy = [str(job.id), series.series_key]
        uid_root = settings.dicom_uid_root
        write(
            f"{series.series_key}.sr.dcm",
            series_report(headers, result, entropy=entropy, uid_root=uid_root),
        )
        fetched: dict[str, bytes] = {}  # a series' key slices usually share one pack
        for position, (header, prediction_id) in enumerate(
            zip(headers, by_key.values(), strict=True), 1
        ):
            stored = map_of(prediction_id, fetched)
            if stored is None:
                done.maps_missing += 1
                continue
            pm = heatmap_map(
                header,
                stored.cam,
                result,
                entropy=entropy,
                uid_root=uid_root,
                instance_number=position,
                frame=stored.frame,
            )
            write(f"{series.series_key}.map{position}.dcm", pm)
            done.maps += 1
        if outgoing:
            assert isinstance(source, DicomwebStore)
            try:
                done.stored += source.store(outgoing)
                done.series_stored += 1
            except StorageError as exc:
                done.not_stored[str(exc)] = done.not_stored.get(str(exc), 0) + 1
            outgoing.clear()
    return done
