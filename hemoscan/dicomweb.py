"""A PACS (or vendor-neutral archive) speaking DICOMweb as a scan source and a result sink.

A source is written ``dicomweb+http://HOST:PORT/PATH`` (``dicomweb+https://`` too): the
DICOMweb service root, without credentials (those come from ``HEMOSCAN_DICOMWEB_*``).

- **Listing** (the producer): QIDO-RS, studies -> their series -> their instances, each level
  paged with ``limit``/``offset`` (``HEMOSCAN_DICOMWEB_PAGE_SIZE``), so an archive is never
  held in memory; filtered by modality (CT by default), study date range and description
  matches (``Filters``). Through ``dicomweb-client``.
- **Object keys**: ``<study pseudonym>/<series pseudonym>/<instance pseudonym>.dcm``, keyed
  pseudonyms of the UIDs (``hemoscan.privacy.pseudonym``, the same ones the series verdicts
  use). The UIDs a retrieval needs travel as a **locator**: AES-GCM under a key derived from
  the pseudonym secret, bound to its object key, kept in the ``scans`` table
  (``hemoscan.privacy.seal_locator``). Workers already hold that secret, so no second one is
  distributed; task arguments, Flower, logs and output keys only ever see object keys.
- **Retrieval** (the workers): WADO-RS of one instance, its bytes as stored
  (``transfer-syntax=*``), read from the multipart response here: ``dicomweb-client``'s
  retrieval returns decoded pydicom datasets, which the decoder would then have to encode
  again. Timeouts and retries (connection errors, 429, 5xx, with backoff) per the settings;
  errors map onto the object-store ones, so the pipeline's rules hold unchanged: 404 is
  ``missing``, 401/403 a configuration error, anything that may pass is transient.
- **Write-back**: STOW-RS of the DICOM results (``hemoscan dicom-results --write-back``).

Messages and log records never carry a UID: URLs are shown as the source plus the object key,
and the HTTP libraries' own log records (urllib3 logs each retried URL) have UIDs redacted.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from hemoscan.errors import (
    ConfigurationError,
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    StorageError,
)
from hemoscan.privacy import LocatorError, open_locator, pseudonym, seal_locator
from hemoscan.settings import ENV_PREFIX, Settings

SCHEMES = ("dicomweb+http://", "dicomweb+https://")
_ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_STUDY, _SERIES, _INSTANCE = "0020000D", "0020000E", "00080018"
# A DICOM UID has at least five components in practice (a root such as 1.2.840.10008 and
# more); an IPv4 address has four and is left alone.
_UID = re.compile(r"(?<![\d.])\d+(?:\.\d+){4,}(?![\d.])")
# Room for the multipart framing around the one instance of a WADO-RS response.
_FRAMING = 64 * 1024


def is_dicomweb(location: str) -> bool:
    return str(location).startswith(SCHEMES)


def redact(text: str) -> str:
    """``text`` with every UID-shaped string replaced by ``<uid>``."""
    return _UID.sub("<uid>", text)


class _RedactUids(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "dicomweb_client.web"):
    logging.getLogger(_name).addFilter(_RedactUids())


@dataclass(frozen=True)
class Filters:
    """QIDO-RS filters of a DICOMweb scan (``hemoscan scan --modality ...``)."""

    modality: str = "CT"
    study_date: str | None = None  # YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end open)
    study_description: str | None = None  # a match; * and ? are wildcards
    series_description: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z0-9_]{1,16}", self.modality or ""):
            raise ConfigurationError(
                f"--modality must be a DICOM modality code such as CT, not {self.modality!r}"
            )
        date = self.study_date
        if date is not None and (
            date in ("", "-") or not re.fullmatch(r"(\d{8})?(-(\d{8})?)?", date)
        ):
            raise ConfigurationError(
                f"--study-date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD, not {date!r}"
            )

    def params(self) -> dict[str, str]:
        """The job's record of them (set ones only)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def study_query(self) -> dict[str, str]:
        query = {"ModalitiesInStudy": self.modality}
        if self.study_date:
            query["StudyDate"] = self.study_date
        if self.study_description:
            query["StudyDescription"] = self.study_description
        return query

    def series_query(self) -> dict[str, str]:
        query = {"Modality": self.modality}
        if self.series_description:
            query["SeriesDescription"] = self.series_description
        return query


def service_root(location: str) -> str:
    """The HTTP(S) service root of a ``dicomweb+http(s)://`` location; ConfigurationError for
    one with credentials, a query or no host."""
    text = str(location)
    if not is_dicomweb(text):
        raise ConfigurationError(f"not a DICOMweb location (dicomweb+http[s]://...): {text!r}")
    parts = urlsplit(text.removeprefix("dicomweb+"))
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "a DICOMweb location must not carry credentials: set "
            f"{ENV_PREFIX}DICOMWEB_USERNAME and {ENV_PREFIX}DICOMWEB_PASSWORD (or "
            f"{ENV_PREFIX}DICOMWEB_TOKEN) instead"
        )
    if not parts.hostname:
        raise ConfigurationError(f"no host in DICOMweb location {text!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"a DICOMweb location is the service root only (filters are `hemoscan scan` "
            f"options): {text!r}"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


_sessions: dict[tuple[object, ...], Any] = {}
_sessions_lock = threading.Lock()


def _session(settings: Settings):  # type: ignore[no-untyped-def]
    """The process's requests session for these settings: one connection pool for every I/O
    thread, urllib3 retries with backoff on connection errors, 429 and 5xx, and the auth."""
    password = settings.dicomweb_password
    token = settings.dicomweb_token
    if token is not None and (settings.dicomweb_username or password is not None):
        raise ConfigurationError(
            f"set either {ENV_PREFIX}DICOMWEB_TOKEN or {ENV_PREFIX}DICOMWEB_USERNAME and "
            "_PASSWORD, not both"
        )
    key = (
        settings.dicomweb_username,
        password.get_secret_value() if password else None,
        token.get_secret_value() if token else None,
        settings.dicomweb_max_attempts,
        settings.fetch_threads,
    )
    with _sessions_lock:
        if key not in _sessions:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            session = requests.Session()
            retry = Retry(
                total=settings.dicomweb_max_attempts - 1,
                connect=settings.dicomweb_max_attempts - 1,
                read=settings.dicomweb_max_attempts - 1,
                status=settings.dicomweb_max_attempts - 1,
                backoff_factor=0.2,
                backoff_max=5.0,
                status_forcelist=(429, 500, 502, 503, 504),
                # STOW-RS of the same instances again stores the same objects: safe to retry.
                allowed_methods=frozenset({"GET", "POST"}),
                raise_on_status=False,  # the last response is mapped here, not a RetryError
                respect_retry_after_header=True,
            )
            pool = max(10, settings.fetch_threads * 2)
            adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            if token is not None:
                session.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
            elif settings.dicomweb_username:
                session.auth = (
                    settings.dicomweb_username,
                    password.get_secret_value() if password else "",
                )
            _sessions[key] = session
        return _sessions[key]


def multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a ``multipart/related`` message (RFC 2046) with this Content-Type."""
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if not content_type.lower().startswith("multipart/") or not match:
        raise ValueError(f"not a multipart message with a boundary: {content_type[:80]!r}")
    delimiter = b"\r\n--" + (match.group(1) or match.group(2)).encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    parts: list[bytes] = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            return parts  # the close delimiter
        head, sep, content = segment.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header end")
        parts.append(content)
    raise ValueError("the multipart message has no close delimiter (truncated?)")


@dataclass(frozen=True, slots=True)
class Located:
    """One listed instance: its object key and the sealed locator that retrieves it."""

    key: str
    locator: str


class DicomwebStore:
    """A DICOMweb service as a source store. ``needs_locator``: objects are retrieved with
    ``get_located(key, locator)``; ``list``/``get`` by key alone cannot work."""

    needs_locator = True

    def __init__(self, location: str, settings: Settings) -> None:
        self.root = service_root(location)
        self.location = f"dicomweb+{self.root}"
        self._settings = settings
        self._http = _session(settings)
        self._timeout = (settings.dicomweb_connect_timeout, settings.dicomweb_read_timeout)

    # --- what any source store answers ---------------------------------------------------
    def uri(self, key: str) -> str:
        return f"{self.location}#{key}"

    def link(self, key: str, expires_seconds: int = 3600) -> str:
        return self.uri(key)

    def list(self, prefix: str = "", page_size: int = 1000) -> Iterator[Any]:
        raise ConfigurationError("a DICOMweb source is listed with QIDO-RS filters (instances())")

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        raise InvalidKey("an instance of a DICOMweb source is retrieved through its locator")

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        raise ConfigurationError(
            "a DICOMweb service is not an output location (results go back with --write-back)"
        )

    def exists(self, key: str) -> bool:
        return False

    # --- errors --------------------------------------------------------------------------
    def _status_error(self, status: int, what: str) -> Exception:
        if status == 404:
            return ObjectMissing(what)
        if status in (401, 403):
            return ConfigurationError(
                f"the DICOMweb server refused the credentials (HTTP {status}) at {self.location}: "
                f"check {ENV_PREFIX}DICOMWEB_USERNAME/_PASSWORD or {ENV_PREFIX}DICOMWEB_TOKEN"
            )
        if status in (400, 406, 415):
            return ConfigurationError(
                f"the DICOMweb server rejected the request (HTTP {status}) at {self.location}"
            )
        return StorageError(f"DICOMweb server error (HTTP {status}) for {what}")

    def _io_error(self, exc: Exception, what: str) -> StorageError:
        import requests

        text = str(exc)
        if isinstance(exc, requests.Timeout):
            reason = "the DICOMweb server timed out"
        elif "Connection refused" in text:
            reason = "the DICOMweb server refused the connection"
        elif "resolve" in text or "Name or service not known" in text:
            reason = "the DICOMweb server's host name does not resolve"
        elif isinstance(exc, requests.ConnectionError):
            reason = "the connection to the DICOMweb server failed or broke"
        else:  # the library's text quotes the URL: only its type is shown
            reason = f"DICOMweb request failed ({type(exc).__name__})"
        return StorageError(f"{reason}: {what}")

    def _get(self, url: str, what: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        import requests

        try:
            response = self._http.get(url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise self._io_error(exc, what) from None
        if response.status_code >= 300:
            response.close()
            raise self._status_error(response.status_code, what)
        return response

    # --- the producer: checks and the listing --------------------------------------------
    def check(self) -> None:
        """One QIDO-RS request: a clear ConfigurationError when the server cannot be reached
        or refuses the credentials, before a job is created."""
        try:
            self._get(f"{self.root}/studies", self.location, params={"limit": "1"}).close()
        except StorageError as exc:
            raise ConfigurationError(
                f"the DICOMweb source does not answer ({exc}); is the server running and "
                "reachable from here?"
            ) from None
        except ObjectMissing:
            raise ConfigurationError(
                f"no QIDO-RS service at {self.location} (HTTP 404 for /studies): is this the "
                "DICOMweb root (e.g. http://host:8042/dicom-web)?"
            ) from None

    def _qido(self, path: str, query: dict[str, str], page_size: int) -> Iterator[dict[str, Any]]:
        """Every result of one QIDO-RS search, a page (limit/offset) at a time."""
        offset = 0
        while True:
            params = {**query, "limit": str(page_size), "offset": str(offset)}
            # Wildcards and the alternatives' commas travel as themselves: a server may take
            # %2A for a literal star (Orthanc 1.12 does: `*head*` sent as %2Ahead%2A matches
            # nothing).
            encoded = urlencode(params, safe="*?,", quote_via=quote)
            response = self._get(f"{self.root}/{path}?{encoded}", self.location)
            try:
                page = response.json() if response.status_code != 204 and response.content else []
            except ValueError:
                raise StorageError(f"the QIDO-RS answer of {self.location} is not JSON") from None
            yield from page
            if len(page) < page_size:
                return
            offset += len(page)

    def instances(self, filters: Filters, secret: bytes) -> Iterator[Located]:
        """Every instance of the series the filters select, study by study, as object keys
        and sealed locators (streamed: at most a page of each level is held)."""
        page = self._settings.dicomweb_page_size
        for study in self._qido("studies", filters.study_query(), page):
            st = _value(study, _STUDY)
            if not st:
                continue
            for series in self._qido(f"studies/{st}/series", filters.series_query(), page):
                se = _value(series, _SERIES)
                if not se:
                    continue
                path = f"studies/{st}/series/{se}/instances"
                for instance in self._qido(path, {}, page):
                    sop = _value(instance, _INSTANCE)
                    if sop:
                        key = instance_key(st, se, sop, secret)
                        yield Located(key, seal_locator((st, se, sop), key, secret))

    # --- the workers: retrieval ----------------------------------------------------------
    @staticmethod
    def _open(key: str, locator: str | None, secret: bytes) -> tuple[str, str, str]:
        """The (study, series, instance) UIDs a scan row's sealed locator holds for ``key``."""
        if not locator:
            raise InvalidKey("no locator is recorded for this key (it was not listed by hemoscan)")
        try:
            st, se, sop = open_locator(locator, key, secret)
        except (LocatorError, ValueError) as exc:
            raise ConfigurationError(
                f"{exc}: the job was listed with another {ENV_PREFIX}PSEUDONYM_KEY"
            ) from None
        return st, se, sop

    def get_located(
        self, key: str, locator: str | None, secret: bytes, max_bytes: int | None = None
    ) -> bytes:
        """The instance's bytes as the server stores them (WADO-RS, ``transfer-syntax=*``)."""
        st, se, sop = self._open(key, locator, secret)
        what = self.uri(key)
        url = f"{self.root}/studies/{st}/series/{se}/instances/{sop}"
        response = self._get(url, what, headers={"Accept": _ACCEPT_INSTANCE}, stream=True)
        limit = None if max_bytes is None else max_bytes + _FRAMING
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if limit is not None and declared > limit:
                raise ObjectTooLarge(what, declared, max_bytes or 0)
            chunks, total = [], 0
            for chunk in response.iter_content(256 * 1024):
                total += len(chunk)
                if limit is not None and total > limit:
                    raise ObjectTooLarge(what, total, max_bytes or 0)
                chunks.append(chunk)
        except ObjectTooLarge:
            raise
        except Exception as exc:  # the connection broke or timed out mid-body
            raise self._io_error(exc, what) from None
        finally:
            response.close()
        body = b"".join(chunks)
        content_type = response.headers.get("Content-Type", "")
        if content_type.lower().startswith("application/dicom"):
            data = body
        else:
            try:
                parts = multipart_parts(content_type, body)
            except ValueError as exc:
                raise StorageError(f"unreadable WADO-RS answer for {what}: {exc}") from None
            if not parts:
                raise ObjectMissing(what)
            data = parts[0]
        if max_bytes is not None and len(data) > max_bytes:
            raise ObjectTooLarge(what, len(data), max_bytes)
        return data

    def header_located(self, key: str, locator: str | None, secret: bytes) -> Any:
        """The instance's attributes without its pixels (WADO-RS ``/metadata``, DICOM JSON),
        as a pydicom Dataset: what a result object copies from its source, at a fraction of
        the instance's bytes. Bulk data the server refers to by URI (the pixels, large
        private elements) is left out. An answer that is not DICOM JSON is a StorageError (the
        server's), an element pydicom cannot read an InvalidDicomError (the slice's)."""
        import pydicom

        st, se, sop = self._open(key, locator, secret)
        what = self.uri(key)
        url = f"{self.root}/studies/{st}/series/{se}/instances/{sop}/metadata"
        response = self._get(url, what, headers={"Accept": "application/dicom+json"})
        try:
            items = response.json()
        except ValueError:
            raise StorageError(f"the WADO-RS metadata of {what} is not JSON") from None
        finally:
            response.close()
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise ObjectMissing(what)
        bulk = {tag for tag, element in items[0].items() if "BulkDataURI" in element}
        found = {tag: element for tag, element in items[0].items() if tag not in bulk}
        try:
            return pydicom.Dataset.from_json(found)
        except Exception as exc:  # a malformed element; only the type (values may be PHI)
            raise pydicom.errors.InvalidDicomError(
                f"unreadable WADO-RS metadata for {what} ({type(exc).__name__})"
            ) from None

    # --- write-back ----------------------------------------------------------------------
    def store(self, datasets: Sequence[Any]) -> int:
        """STOW-RS of ``datasets`` (pydicom Datasets) in one request; returns how many the
        server stored. StorageError (transient) or ConfigurationError as for retrieval; a
        server that stores some and refuses others raises StorageError naming how many."""
        import requests
        from dicomweb_client import DICOMwebClient

        client = DICOMwebClient(url=self.root, session=self._http)
        try:
            answer = client.store_instances(list(datasets))
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            error = self._status_error(status, f"STOW-RS to {self.location}")
            raise (
                StorageError(str(error)) if isinstance(error, ObjectMissing) else error
            ) from None
        except requests.RequestException as exc:
            raise self._io_error(exc, f"STOW-RS to {self.location}") from None
        failed = len(getattr(answer, "FailedSOPSequence", []) or [])
        if failed:
            raise StorageError(f"the DICOMweb server refused {failed} of {len(datasets)} object(s)")
        return len(datasets)


def instance_key(study_uid: str, series_uid: str, sop_uid: str, secret: bytes) -> str:
    """The object key of an instance: its study, series and instance pseudonyms."""
    return (
        f"{pseudonym('study', study_uid, secret)}/{pseudonym('series', series_uid, secret)}/"
        f"{pseudonym('instance', sop_uid, secret)}.dcm"
    )


def _value(item: dict[str, Any], tag: str) -> str | None:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else None
