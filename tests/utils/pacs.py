"""Phantom studies in the local Orthanc (tests/conftest.py ``orthanc``), over DICOMweb."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from tests.utils.archive import make_series


def pacs_client(pacs, password: str | None = None) -> DICOMwebClient:  # type: ignore[no-untyped-def]
    session = requests.Session()
    session.auth = (pacs.user, password or pacs.password)
    return DICOMwebClient(pacs.dicomweb, session=session)


def stow_phantom_studies(  # type: ignore[no-untyped-def]
    pacs,
    folder: Path,
    count: int,
    seed: int,
    marker: str,
    dates: Sequence[str] | None = None,
    size: int = 64,
) -> list[pydicom.Dataset]:
    """``count`` phantom series, each its own study described as ``marker`` (the tests'
    studies are told apart by it in a PACS other runs also fill), dated ``dates[i]``, stored
    into the PACS with STOW-RS under fresh UIDs (the generator's are deterministic by seed, and
    a rerun must not meet the previous run's objects). Returns the datasets sent."""
    records = make_series(folder, count, seed=seed, size=size)
    datasets: list[pydicom.Dataset] = [pydicom.dcmread(r["file"]) for r in records]
    fresh: dict[str, str] = {}
    studies = sorted({ds.StudyInstanceUID for ds in datasets})
    for ds in datasets:
        date = dates[studies.index(ds.StudyInstanceUID)] if dates else ds.StudyDate
        for attribute in ("StudyInstanceUID", "SeriesInstanceUID"):
            old = getattr(ds, attribute)
            setattr(ds, attribute, fresh.setdefault(old, pydicom.uid.generate_uid()))
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDescription, ds.StudyDate, ds.SeriesDate = marker, date, date
    client = pacs_client(pacs)
    for start in range(0, len(datasets), 40):
        client.store_instances(datasets[start : start + 40])
    return datasets


def delete_instance(pacs, sop_uid: str) -> None:  # type: ignore[no-untyped-def]
    """Remove one instance from Orthanc (its REST API: look the UID up, delete the resource)."""
    auth = (pacs.user, pacs.password)
    found = requests.post(f"{pacs.url}/tools/lookup", data=sop_uid, auth=auth, timeout=10)
    found.raise_for_status()
    [resource] = [r for r in found.json() if r["Type"] == "Instance"]
    requests.delete(f"{pacs.url}{resource['Path']}", auth=auth, timeout=10).raise_for_status()
