"""The pure parts of the DICOMweb source: sealed locators, source URLs, QIDO-RS filters, the
multipart reader, error mapping and UID redaction (the network parts run against the real
Orthanc in tests/integration/test_dicomweb.py and tests/faults/test_pacs_faults.py)."""

from __future__ import annotations

import logging

import pytest

from hemoscan.dicomweb import (
    DicomwebStore,
    Filters,
    instance_key,
    multipart_parts,
    redact,
    service_root,
)
from hemoscan.errors import ConfigurationError, InvalidKey, ObjectMissing, StorageError
from hemoscan.privacy import LocatorError, open_locator, seal_locator
from hemoscan.settings import load_settings

UIDS = ("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3")
KEY = b"pseudonym-test-secret-0123456789"


def test_a_locator_opens_with_its_key_and_object_key_only():
    token = seal_locator(UIDS, "a/b/c.dcm", KEY)
    assert open_locator(token, "a/b/c.dcm", KEY) == UIDS
    assert not any(uid in token for uid in UIDS)
    assert seal_locator(UIDS, "a/b/c.dcm", KEY) != token, "a fresh nonce each time"
    with pytest.raises(LocatorError):
        open_locator(token, "a/b/c.dcm", b"another-secret-of-32-bytes------")
    with pytest.raises(LocatorError):  # bound to its row: copied to another key, it fails
        open_locator(token, "a/b/other.dcm", KEY)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(LocatorError):
        open_locator(flipped, "a/b/c.dcm", KEY)
    with pytest.raises(LocatorError):
        open_locator("not a locator", "a/b/c.dcm", KEY)


def test_instance_keys_are_pseudonyms_stable_per_key():
    key = instance_key(*UIDS, KEY)
    assert key == instance_key(*UIDS, KEY)
    study, series, instance = key.split("/")
    assert study.startswith("study-") and series.startswith("series-")
    assert instance.startswith("instance-") and instance.endswith(".dcm")
    assert not any(uid in key for uid in UIDS)
    assert instance_key(*UIDS, b"x" * 32) != key


@pytest.mark.parametrize(
    ("location", "root"),
    [
        ("dicomweb+http://pacs:8042/dicom-web/", "http://pacs:8042/dicom-web"),
        ("dicomweb+https://pacs.example.org/wado", "https://pacs.example.org/wado"),
    ],
)
def test_a_source_url_is_the_service_root(location, root):
    assert service_root(location) == root


@pytest.mark.parametrize(
    ("location", "says"),
    [
        ("dicomweb+http://user:pw@pacs:8042/dicom-web", "must not carry credentials"),
        ("dicomweb+http:///dicom-web", "no host"),
        ("dicomweb+http://pacs/dicom-web?ModalitiesInStudy=CT", "service root only"),
        ("http://pacs/dicom-web", "not a DICOMweb location"),
    ],
)
def test_a_bad_source_url_says_what_is_wrong(location, says):
    with pytest.raises(ConfigurationError, match=says) as err:
        service_root(location)
    assert "pw" not in str(err.value).replace("password", "")


def test_filters_make_the_qido_queries_and_refuse_bad_values():
    chosen = Filters(study_date="20240101-20240131", study_description="*HEAD*")
    assert chosen.study_query() == {
        "ModalitiesInStudy": "CT",
        "StudyDate": "20240101-20240131",
        "StudyDescription": "*HEAD*",
    }
    assert Filters(series_description="AX*").series_query() == {
        "Modality": "CT",
        "SeriesDescription": "AX*",
    }
    assert Filters(study_date="-20240131").params() == {"modality": "CT", "study_date": "-20240131"}
    for date in ("2024-01-01", "", "-", "20240101-2024"):
        with pytest.raises(ConfigurationError, match="--study-date"):
            Filters(study_date=date)
    with pytest.raises(ConfigurationError, match="--modality"):
        Filters(modality="ct; drop")


def test_multipart_reader_returns_each_body_byte_exact():
    body = b"\x00\r\n--not-it\r\n\xff" * 3
    message = (
        b"--b0und\r\nContent-Type: application/dicom\r\n\r\n" + body
        + b"\r\n--b0und\r\nContent-Type: application/dicom\r\n\r\nsecond"
        + b"\r\n--b0und--\r\n"
    )  # fmt: skip
    ctype = 'multipart/related; type="application/dicom"; boundary="b0und"'
    assert multipart_parts(ctype, message) == [body, b"second"]
    assert multipart_parts("multipart/related; boundary=b0und", message)[1] == b"second"
    with pytest.raises(ValueError, match="close delimiter"):
        multipart_parts(ctype, message[: len(message) // 2])
    with pytest.raises(ValueError, match="boundary"):
        multipart_parts("application/json", message)


def _store() -> DicomwebStore:
    return DicomwebStore("dicomweb+http://127.0.0.1:9/dicom-web", load_settings())


def test_http_answers_map_onto_the_object_store_rules():
    store = _store()
    assert isinstance(store._status_error(404, "x"), ObjectMissing)
    for status in (401, 403):
        refused = store._status_error(status, "x")
        assert isinstance(refused, ConfigurationError) and "DICOMWEB_USERNAME" in str(refused)
    for status in (500, 503, 429):
        assert type(store._status_error(status, "x")) is StorageError  # transient


def test_a_key_without_its_locator_is_a_bad_key_and_a_foreign_locator_a_config_error():
    store = _store()
    with pytest.raises(InvalidKey):
        store.get("study-x/series-y/instance-z.dcm")
    with pytest.raises(InvalidKey, match="no locator"):
        store.get_located("k.dcm", None, KEY)
    token = seal_locator(UIDS, "k.dcm", b"another-secret-of-32-bytes------")
    with pytest.raises(ConfigurationError, match="PSEUDONYM_KEY"):
        store.get_located("k.dcm", token, KEY)


def test_token_and_password_together_are_refused():
    settings = load_settings(dicomweb_username="u", dicomweb_password="p", dicomweb_token="t")
    with pytest.raises(ConfigurationError, match="not both"):
        DicomwebStore("dicomweb+http://127.0.0.1:9/dicom-web", settings)


def test_uids_are_redacted_from_text_and_from_the_http_libraries_log_records(caplog):
    url = f"/dicom-web/studies/{UIDS[0]}/series/{UIDS[1]}/instances/{UIDS[2]}"
    assert redact(f"GET http://127.0.0.1:8042{url}") == (
        "GET http://127.0.0.1:8042/dicom-web/studies/<uid>/series/<uid>/instances/<uid>"
    )
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").warning("Retrying after %s: %s", "reset", url)
    assert caplog.records and not any(uid in caplog.text for uid in UIDS)


def test_a_token_goes_as_a_bearer_header_and_a_user_as_basic_auth():
    root = "dicomweb+http://127.0.0.1:9/dicom-web"
    bearer = DicomwebStore(root, load_settings(dicomweb_token="t0ken"))._http
    assert bearer.headers["Authorization"] == "Bearer t0ken" and bearer.auth is None
    basic = DicomwebStore(root, load_settings(dicomweb_username="u", dicomweb_password="p"))._http
    assert basic.auth == ("u", "p") and "Authorization" not in basic.headers


class _Answer:
    """What ``DicomwebStore._get`` returns, as far as ``header_located`` reads it."""

    def __init__(self, body):  # type: ignore[no-untyped-def]
        self._body = body

    def json(self):  # type: ignore[no-untyped-def]
        if isinstance(self._body, Exception):
            raise self._body
        return self._body

    def close(self) -> None:
        pass


def test_metadata_keeps_the_attributes_drops_bulk_data_and_says_whose_fault_a_bad_answer_is(
    monkeypatch,
):
    import pydicom

    store = _store()
    key = instance_key(*UIDS, KEY)
    token = seal_locator(UIDS, key, KEY)
    seen: list[str] = []

    def answer(body):  # type: ignore[no-untyped-def]
        def get(url, what, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(url)
            assert kwargs["headers"]["Accept"] == "application/dicom+json"
            return _Answer(body)

        return get

    item = {
        "00100020": {"vr": "LO", "Value": ["PHANTOM-1"]},
        "00280010": {"vr": "US", "Value": [64]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "http://pacs/bulk/1"},
    }
    monkeypatch.setattr(store, "_get", answer([item]))
    header = store.header_located(key, token, KEY)
    assert header.PatientID == "PHANTOM-1" and header.Rows == 64 and "PixelData" not in header
    assert seen[0].endswith(f"/studies/{UIDS[0]}/series/{UIDS[1]}/instances/{UIDS[2]}/metadata")
    monkeypatch.setattr(store, "_get", answer(ValueError("not json")))
    with pytest.raises(StorageError, match="not JSON"):
        store.header_located(key, token, KEY)
    monkeypatch.setattr(store, "_get", answer([]))
    with pytest.raises(ObjectMissing):
        store.header_located(key, token, KEY)
    monkeypatch.setattr(store, "_get", answer([{"00280010": {"vr": "US", "Value": ["x"]}}]))
    with pytest.raises(pydicom.errors.InvalidDicomError, match="unreadable WADO-RS metadata"):
        store.header_located(key, token, KEY)
    with pytest.raises(InvalidKey, match="no locator"):
        store.header_located(key, None, KEY)
