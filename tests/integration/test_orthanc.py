"""The local PACS (issue 17's ground): the Orthanc that ``scripts/services.sh`` starts speaks
DICOMweb and asks for credentials.

A phantom series goes in over STOW-RS, QIDO-RS finds it with its instance count and WADO-RS
gives the same pixels back, with the test user's password; without it, or with a wrong one,
every DICOMweb call is refused (401). This is what the DICOMweb source and the write-back of
DICOM results will run against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from requests.auth import HTTPBasicAuth

from tests.utils.archive import make_series


def _client(url: str, auth: HTTPBasicAuth | None) -> DICOMwebClient:
    session = requests.Session()
    session.auth = auth
    return DICOMwebClient(url, session=session)


def _fresh_uids(datasets: list[pydicom.Dataset]) -> str:
    """New study, series and instance UIDs (a rerun must not find the previous run's
    objects): the generator's are deterministic by seed."""
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for ds in datasets:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return series


def test_a_series_goes_in_over_stow_and_comes_back_over_qido_and_wado(orthanc, tmp_path):
    records = make_series(tmp_path / "src", 1, seed=31, size=64)
    datasets = [pydicom.dcmread(Path(r["file"])) for r in records]
    series_uid = _fresh_uids(datasets)
    pacs = _client(orthanc.dicomweb, HTTPBasicAuth(orthanc.user, orthanc.password))

    pacs.store_instances(datasets)

    [found] = pacs.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
    series = pydicom.Dataset.from_json(found)
    assert series.Modality == "CT"
    assert int(series.NumberOfSeriesRelatedInstances) == len(datasets)
    study_uid = datasets[0].StudyInstanceUID
    instances = pacs.search_for_instances(study_uid, series_uid, search_filters={"limit": 2})
    assert len(instances) == 2, "QIDO-RS pages (limit)"
    sent = datasets[len(datasets) // 2]
    back = pacs.retrieve_instance(study_uid, series_uid, sent.SOPInstanceUID)
    assert back.SOPInstanceUID == sent.SOPInstanceUID
    np.testing.assert_array_equal(back.pixel_array, sent.pixel_array)


@pytest.mark.parametrize("password", [None, "wrong"])
def test_without_the_right_password_every_dicomweb_call_is_refused(orthanc, password):
    auth = None if password is None else HTTPBasicAuth(orthanc.user, password)
    pacs = _client(orthanc.dicomweb, auth)
    with pytest.raises(requests.HTTPError) as refused:
        pacs.search_for_studies()
    assert refused.value.response.status_code == 401
    with pytest.raises(requests.HTTPError) as refused:
        pacs.store_instances([])
    assert refused.value.response.status_code == 401
