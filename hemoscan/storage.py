"""One interface over S3-compatible object storage and a local folder.

Locations are written ``s3://bucket/prefix`` or as a path (``file://`` accepted). Keys are
always relative to the location's prefix and use ``/`` separators, so the same job can move
between a laptop folder and a bucket. Listings are streamed page by page: a bucket of millions
of objects is never held in memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from hemoscan.errors import (
    ConfigurationError,
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    StorageError,
)
from hemoscan.settings import S3Client, Settings


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One listed object: its key relative to the store's prefix, size in bytes, and ETag."""

    key: str
    size: int
    etag: str | None = None


class ObjectStore(Protocol):
    """What producer and workers need from an object store."""

    location: str

    def list(self, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]: ...
    def get(self, key: str, max_bytes: int | None = None) -> bytes: ...
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str: ...
    def exists(self, key: str) -> bool: ...
    def uri(self, key: str) -> str: ...
    def link(self, key: str, expires_seconds: int = 3600) -> str: ...


def write_atomic(path: Path, data: bytes) -> None:
    """Write then rename: a reader never sees half a file, a retry simply overwrites, and a
    failed write leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _join(prefix: str, key: str) -> str:
    return f"{prefix.rstrip('/')}/{key}" if prefix else key


class LocalStore:
    """A folder on disk behaving as an object store (the embedded mode)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        try:
            path = (self.root / key).resolve()
        except (ValueError, OSError) as exc:  # a NUL byte, a name too long for the OS
            raise InvalidKey(f"the key is not a valid path here ({type(exc).__name__})") from None
        if path != self.root and self.root not in path.parents:
            raise InvalidKey("the key escapes the store's folder")
        return path

    def list(self, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        # os.walk yields one directory at a time; sorted for a stable, resumable order.
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            yield self._info(base)
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                yield self._info(Path(dirpath) / name)

    def _info(self, path: Path) -> ObjectInfo:
        stat = path.stat()
        etag = f"{stat.st_size:x}-{stat.st_mtime_ns:x}"
        return ObjectInfo(path.relative_to(self.root).as_posix(), stat.st_size, etag)

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise ObjectTooLarge(self.uri(key), size, max_bytes)
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(self.uri(key)) from None
        except PermissionError as exc:
            raise StorageError(f"cannot read {self.uri(key)}: {exc.strerror}") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return self.uri(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def link(self, key: str, expires_seconds: int = 3600) -> str:
        """A ``file://`` URL (a folder's objects do not expire)."""
        return self._path(key).as_uri()


_clients: dict[tuple[object, ...], object] = {}
_clients_lock = threading.Lock()


def _connection(settings: Settings) -> tuple[object, ...]:
    """The settings a client's connections depend on: clients are shared per these."""
    secret = settings.s3_secret_access_key
    return (
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        secret.get_secret_value() if secret else None,
        settings.s3_connect_timeout,
        settings.s3_read_timeout,
        settings.s3_max_attempts,
    )


def s3_client(settings: Settings):  # type: ignore[no-untyped-def]
    """The process's boto3 S3 client for these settings, shared by every store that uses them.

    One client (boto3 clients are thread-safe) means one connection pool for the source and
    the output bucket, sized for the I/O threads. Three settings cut botocore's CPU per request,
    measured with ``python -m bench.micro s3`` (bench/README.md): no ``Expect: 100-continue``
    handshake before each upload (botocore adds it to every PutObject; for bodies of tens of kB
    it is one more round trip and parse on both sides), no client-side parameter validation
    (hemoscan builds every request itself), and checksums per ``HEMOSCAN_S3_CHECKSUMS``.
    """
    key = (*_connection(settings), settings.s3_checksums, settings.fetch_threads)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _new_client(settings)
        return _clients[key]


def _new_client(settings: Settings):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config
    from botocore.handlers import add_expect_header

    config = Config(
        region_name=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        # The source and output stores and every I/O thread share this client.
        max_pool_connections=max(10, settings.fetch_threads * 2),
        parameter_validation=False,
        request_checksum_calculation=settings.s3_checksums.value,
        response_checksum_validation=settings.s3_checksums.value,
    )
    secret = settings.s3_secret_access_key
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


class S3Store:
    """An S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph) under an optional prefix."""

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = s3_client(settings)
        self._errors = (BotoCoreError, ClientError)

    def _key(self, key: str) -> str:
        return _join(self.prefix, key)

    def _fail(self, exc: Exception, key: str, action: str) -> Exception:
        # A timeout or a dropped connection carries no response (None), a refusal one.
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectMissing(self.uri(key))
        if code in ("KeyTooLongError", "InvalidObjectName"):
            return InvalidKey(f"the store rejects this key ({code})")
        if code == "NoSuchBucket":
            return ConfigurationError(f"bucket does not exist: s3://{self.bucket}")
        return StorageError(f"cannot {action} {self.uri(key)}: {exc}")

    def list(self, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        # "pre" + "" lists "pre/": never the sibling "prefix-other/".
        full = _join(self.prefix, prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": page_size}
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    if item["Key"].endswith("/"):
                        continue  # folder markers some tools create
                    etag = item.get("ETag", "").strip('"') or None
                    yield ObjectInfo(item["Key"][strip:], int(item["Size"]), etag)
        except self._errors as exc:
            raise self._fail(exc, prefix, "list") from exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            size = int(response.get("ContentLength", 0))
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()
                raise ObjectTooLarge(self.uri(key), size, max_bytes)
            return response["Body"].read()
        except self._errors as exc:
            raise self._fail(exc, key, "get") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )
        except self._errors as exc:
            raise self._fail(exc, key, "put") from exc
        return self.uri(key)

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self._errors as exc:
            err = self._fail(exc, key, "check")
            if isinstance(err, ObjectMissing):
                return False
            raise err from exc

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (development and tests)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors:
            try:
                self._client.create_bucket(Bucket=self.bucket)
            except self._errors as exc:
                raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def link(self, key: str, expires_seconds: int = 3600) -> str:
        """A presigned HTTP(S) GET URL, valid for ``expires_seconds`` (signed here, no request)."""
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_seconds,
        )


def _obstore_store(bucket: str, settings: Settings):  # type: ignore[no-untyped-def]
    """The process's obstore S3 store of ``bucket`` for these settings (one connection pool a
    bucket: obstore stores are scoped to one bucket, and thread-safe)."""
    secret = settings.s3_secret_access_key
    key = ("obstore", bucket, *_connection(settings))
    with _clients_lock:
        if key not in _clients:
            from datetime import timedelta

            from obstore.store import S3Store as ObS3Store

            options: dict[str, Any] = {"region": settings.s3_region}
            if settings.s3_endpoint_url:
                options["endpoint"] = settings.s3_endpoint_url
            if settings.s3_access_key_id:
                options["access_key_id"] = settings.s3_access_key_id
            if secret:
                options["secret_access_key"] = secret.get_secret_value()
            http = bool(settings.s3_endpoint_url and settings.s3_endpoint_url.startswith("http:"))
            _clients[key] = ObS3Store(
                bucket,
                virtual_hosted_style_request=False,
                client_options={
                    "allow_http": http,
                    "connect_timeout": f"{settings.s3_connect_timeout}s",
                    # object_store's timeout is the whole request's (reqwest); botocore's read
                    # timeout is per read: a whole object within it, as a heatmap or a slice is.
                    "timeout": f"{settings.s3_read_timeout}s",
                },
                retry_config={
                    "max_retries": settings.s3_max_attempts - 1,
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=5),
                        "base": 2.0,
                    },
                    "retry_timeout": timedelta(
                        seconds=settings.s3_read_timeout * settings.s3_max_attempts
                    ),
                },
                **options,
            )
        return _clients[key]


class ObstoreS3Store:
    """An S3-compatible bucket through obstore (``HEMOSCAN_S3_CLIENT=obstore``): the same
    behaviour as ``S3Store`` (keys, errors, streamed listing, presigned links), with the
    requests made by Rust's object_store: less client CPU per request (README, "Performance").
    """

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._store = _obstore_store(bucket, settings)
        self._settings = settings

    def _key(self, key: str) -> str:
        return _join(self.prefix, key)

    def _fail(self, exc: Exception, key: str, action: str) -> Exception:
        from obstore.exceptions import InvalidPathError

        text = str(exc)
        if "NoSuchBucket" in text:
            return ConfigurationError(f"bucket does not exist: s3://{self.bucket}")
        if isinstance(exc, FileNotFoundError):
            return ObjectMissing(self.uri(key))
        if isinstance(exc, InvalidPathError):
            return InvalidKey("the store rejects this key (not a valid object path)")
        first = text.splitlines()[0] if text else type(exc).__name__
        return StorageError(f"cannot {action} {self.uri(key)}: {first[:300]}")

    def list(self, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        import obstore

        # object_store lists by path segments: "pre" lists "pre/...", never "prefix-other/".
        full = _join(self.prefix, prefix).rstrip("/")
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in obstore.list(self._store, prefix=full or None, chunk_size=page_size):
                for item in page:
                    etag = (item.get("e_tag") or "").strip('"') or None
                    yield ObjectInfo(item["path"][strip:], int(item["size"]), etag)
        except Exception as exc:  # obstore's errors are OSError and BaseError subclasses
            raise self._fail(exc, prefix, "list") from exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        import obstore

        try:
            result = obstore.get(self._store, self._key(key))
            size = int(result.meta["size"])
            if max_bytes is not None and size > max_bytes:
                del result  # the body is never read; dropping the stream closes it
                raise ObjectTooLarge(self.uri(key), size, max_bytes)
            return bytes(result.bytes())
        except ObjectTooLarge:
            raise
        except Exception as exc:
            raise self._fail(exc, key, "get") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        import obstore

        try:
            obstore.put(
                self._store, self._key(key), data, attributes={"Content-Type": content_type}
            )
        except Exception as exc:
            raise self._fail(exc, key, "put") from exc
        return self.uri(key)

    def exists(self, key: str) -> bool:
        import obstore

        try:
            obstore.head(self._store, self._key(key))
            return True
        except Exception as exc:
            err = self._fail(exc, key, "check")
            if isinstance(err, ObjectMissing):
                return False
            raise err from exc

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (development and tests: through boto3, as
        object_store has no bucket operations)."""
        S3Store(self.bucket, self.prefix, self._settings).create_bucket()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def link(self, key: str, expires_seconds: int = 3600) -> str:
        """A presigned HTTP(S) GET URL, valid for ``expires_seconds`` (signed here)."""
        from datetime import timedelta

        import obstore

        return str(
            obstore.sign(self._store, "GET", self._key(key), timedelta(seconds=expires_seconds))
        )


def needs_locator(store: ObjectStore) -> bool:
    """Whether the store's objects are retrieved through a locator (a DICOMweb source:
    ``hemoscan.dicomweb``) rather than by key alone."""
    return bool(getattr(store, "needs_locator", False))


def read_source(
    store: ObjectStore,
    key: str,
    locator: str | None = None,
    secret: bytes = b"",
    max_bytes: int | None = None,
) -> bytes:
    """An object of a job's source: by its key, or, from a store that ``needs_locator``,
    through the sealed locator its scan row holds (opened with the pseudonym ``secret``)."""
    if needs_locator(store):
        return store.get_located(key, locator, secret, max_bytes=max_bytes)  # type: ignore[attr-defined]
    return store.get(key, max_bytes=max_bytes)


def open_object(uri: str, settings: Settings) -> tuple[ObjectStore, str]:
    """(store, key) for one object's URI as ``uri()`` writes it: ``s3://bucket/key`` or a path."""
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        return open_store(f"s3://{parsed.netloc}", settings), unquote(parsed.path).lstrip("/")
    path = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri)
    return open_store(path.parent, settings), path.name


def open_store(location: str | Path, settings: Settings) -> ObjectStore:
    """The store for ``s3://bucket/prefix``, ``file:///path``, a plain path, or (a source
    only) a DICOMweb service ``dicomweb+http[s]://host:port/path`` (``hemoscan.dicomweb``)."""
    text = str(location)
    if text.startswith(("dicomweb+http://", "dicomweb+https://")):
        from hemoscan.dicomweb import DicomwebStore

        return DicomwebStore(text, settings)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise ConfigurationError(f"no bucket in object-store location {text!r}")
        if settings.s3_client == S3Client.OBSTORE:
            return ObstoreS3Store(parsed.netloc, unquote(parsed.path), settings)
        return S3Store(parsed.netloc, unquote(parsed.path), settings)
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    elif "://" in text:
        raise ConfigurationError(
            f"unsupported object-store location {text!r}: use s3://bucket/prefix, a folder, "
            "or (a source) dicomweb+http[s]://host:port/dicom-web"
        )
    return LocalStore(text)
