"""The same object-store interface over a real SeaweedFS bucket (through boto3 and through
obstore, ``HEMOSCAN_S3_CLIENT``) and a local folder; timeouts and retries of both S3 clients
against a server that stalls, and one that refuses once."""

from __future__ import annotations

import pytest

from hemoscan.errors import ConfigurationError, ObjectMissing
from hemoscan.settings import load_settings
from hemoscan.storage import LocalStore, ObjectTooLarge, ObstoreS3Store, S3Store, open_store

S3_CLIENTS = ["boto3", "obstore"]


def _boto3(settings):  # type: ignore[no-untyped-def]
    """The settings with boto3 as the client (tests of botocore's own behaviour)."""
    return settings.model_copy(update={"s3_client": "boto3"})


@pytest.fixture(
    params=[
        pytest.param("boto3", marks=pytest.mark.services),
        pytest.param("obstore", marks=pytest.mark.services),
        "local",
    ]
)
def store(request, tmp_path):
    if request.param in S3_CLIENTS:
        settings = request.getfixturevalue("s3_settings").model_copy(
            update={"s3_client": request.param}
        )
        bucket = request.getfixturevalue("s3_bucket")
        made = open_store(f"s3://{bucket}/archive/2024", settings)
        assert type(made).__name__ == ("S3Store" if request.param == "boto3" else "ObstoreS3Store")
        return made
    return open_store(f"file://{tmp_path}/archive", load_settings(data_dir=tmp_path))


def test_put_get_exists(store):
    uri = store.put("ct/slice one ü.png", b"\x89PNG...", "image/png")
    assert uri.endswith("ct/slice one ü.png")
    assert store.exists("ct/slice one ü.png")
    assert not store.exists("ct/absent.png")
    assert store.get("ct/slice one ü.png") == b"\x89PNG..."


def test_missing_key_is_a_typed_error(store):
    with pytest.raises(ObjectMissing) as err:
        store.get("no/such/key.dcm")
    assert "no/such/key.dcm" in str(err.value)


def test_size_limit_is_checked(store):
    store.put("big.bin", b"x" * 100)
    with pytest.raises(ObjectTooLarge):
        store.get("big.bin", max_bytes=99)
    assert len(store.get("big.bin", max_bytes=100)) == 100


def test_listing_streams_across_pages(store):
    keys = {f"series/{i:03d}.dcm" for i in range(25)}
    for key in keys:
        store.put(key, key.encode())
    store.put("other/readme.txt", b"-")
    listed = list(store.list("series/", page_size=10))  # three pages
    assert {o.key for o in listed} == keys
    assert all(o.size == len(o.key) for o in listed)
    assert len(list(store.list(page_size=7))) == 26
    # Streamed, not collected into a list first (S3: one page at a time, the test below).
    listing = store.list(page_size=10)
    assert iter(listing) is listing
    assert next(listing).key in keys | {"other/readme.txt"}


def test_s3_listing_asks_for_a_page_only_when_it_is_needed(s3_settings, s3_bucket):
    """The listing is lazy: nothing is requested until the first object is asked for, the
    first page's objects come back before the second page is requested, and walking it all
    takes one ListObjectsV2 request per page (counted on boto3's client, against SeaweedFS)."""
    store = open_store(f"s3://{s3_bucket}/lazy", _boto3(s3_settings))
    keys = [f"k{i:02d}" for i in range(9)]
    for key in keys:
        store.put(key, b"-")
    requests: list[str] = []
    events = store._client.meta.events
    hook = ("before-send.s3.ListObjectsV2", lambda request, **_: requests.append(request.url))
    events.register(*hook, unique_id="test-list-pages")
    try:
        listing = store.list(page_size=2)
        assert requests == [], "the listing began before an object was asked for"
        assert [next(listing).key, next(listing).key] == keys[:2]
        assert len(requests) == 1, "the first page's objects needed more than one request"
        assert next(listing).key == keys[2] and len(requests) == 2
        assert [o.key for o in listing] == keys[3:]
        assert len(requests) == 5, requests  # 9 objects, 2 a page
    finally:
        events.unregister(hook[0], unique_id="test-list-pages")


@pytest.mark.parametrize("client", S3_CLIENTS)
def test_prefix_does_not_leak_into_a_sibling(s3_settings, s3_bucket, client):
    settings = s3_settings.model_copy(update={"s3_client": client})
    open_store(f"s3://{s3_bucket}/a", settings).put("x", b"1")
    open_store(f"s3://{s3_bucket}/ab", settings).put("y", b"2")
    assert [o.key for o in open_store(f"s3://{s3_bucket}/a", settings).list()] == ["x"]


@pytest.mark.parametrize("client", S3_CLIENTS)
def test_a_missing_bucket_is_a_configuration_error(s3_settings, client):
    settings = s3_settings.model_copy(update={"s3_client": client})
    with pytest.raises(ConfigurationError, match="bucket does not exist"):
        open_store("s3://hemoscan-no-such-bucket/p", settings).get("k")


def test_locations_are_parsed(s3_settings, tmp_path):
    assert isinstance(open_store("s3://bucket/p/q", _boto3(s3_settings)), S3Store)
    obstore = s3_settings.model_copy(update={"s3_client": "obstore"})
    assert isinstance(open_store("s3://bucket/p/q", obstore), ObstoreS3Store)
    assert open_store("s3://bucket/p/q", s3_settings).uri("k") == "s3://bucket/p/q/k"
    assert isinstance(open_store(str(tmp_path), s3_settings), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}", s3_settings), LocalStore)
    with pytest.raises(ConfigurationError):
        open_store("gs://bucket/x", s3_settings)
    with pytest.raises(ConfigurationError):
        open_store(tmp_path, s3_settings).get("../../etc/passwd")


def test_stores_share_one_lean_client(s3_settings, s3_bucket):
    """Source and output stores share one client; uploads skip the 100-continue handshake."""
    source = open_store(f"s3://{s3_bucket}/in", _boto3(s3_settings))
    output = open_store(f"s3://{s3_bucket}/out", _boto3(s3_settings))
    assert source._client is output._client
    sent: list[dict[str, str]] = []
    events = source._client.meta.events
    hook = ("before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers)))
    events.register(*hook, unique_id="test-headers")
    try:
        output.put("heat.png", b"\x89PNG" * 1000, "image/png")
    finally:
        events.unregister(hook[0], unique_id="test-headers")
    assert sent and "Expect" not in sent[0]
    assert output.get("heat.png") == b"\x89PNG" * 1000


def test_uri_opens_back_to_the_object_and_links_fetch_it(store, s3_settings):
    """``open_object(uri)`` finds what ``put`` wrote; ``link`` is a URL that fetches it (S3:
    presigned and fetched over HTTP without credentials; a folder: a file:// URL)."""
    import urllib.request

    from hemoscan.storage import open_object

    uri = store.put("job/ab/x.overlay.png", b"overlay-bytes", "image/png")
    again, key = open_object(uri, s3_settings)
    assert again.get(key) == b"overlay-bytes"
    with urllib.request.urlopen(again.link(key, 60), timeout=10) as response:
        assert response.read() == b"overlay-bytes"


def _fault_server(mode: str):  # type: ignore[no-untyped-def]
    """A local HTTP server standing in for S3 under a fault: ``stall`` accepts and never
    answers; ``refuse_once`` answers the first request 503 SlowDown, then serves the object."""
    import threading
    from email.utils import formatdate
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            seen.append(self.path)
            if mode == "stall":
                release.wait(30)
                return
            if len(seen) == 1:
                body = b"<Error><Code>SlowDown</Code><Message>reduce</Message></Error>"
                self.send_response(503)
            else:
                body = b"payload"
                self.send_response(200)
                self.send_header("ETag", '"e1"')
                self.send_header("Last-Modified", formatdate(usegmt=True))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen, release


@pytest.mark.parametrize("client", S3_CLIENTS)
def test_a_stalled_store_times_out_as_a_transient_error(client, tmp_path):
    """Fault: the server accepts the connection and never answers. Checked: ``get`` gives up
    with a StorageError (which the pipeline retries, then records as gave_up) within its
    timeouts and attempts, not after the server's 30 s."""
    import time

    from hemoscan.errors import StorageError

    server, seen, release = _fault_server("stall")
    settings = load_settings(
        data_dir=tmp_path, s3_client=client, s3_endpoint_url=f"http://127.0.0.1:{server.server_port}",
        s3_access_key_id="k", s3_secret_access_key="s", s3_read_timeout=1.0, s3_max_attempts=2,
    )  # fmt: skip
    started = time.monotonic()
    try:
        with pytest.raises(StorageError) as err:
            open_store("s3://bucket/p", settings).get("slice.dcm")
    finally:
        release.set()
        server.shutdown()
    assert not isinstance(err.value, ObjectMissing)
    assert time.monotonic() - started < 15
    # Bounded attempts: 2 (obstore: one retry); botocore was seen to send a third.
    assert 1 <= len(seen) <= 3, seen


@pytest.mark.parametrize("client", S3_CLIENTS)
def test_a_refused_request_is_retried(client, tmp_path):
    """Fault: the first request gets 503 SlowDown. Checked: the client retries by itself and
    the object arrives, in two requests."""
    server, seen, release = _fault_server("refuse_once")
    settings = load_settings(
        data_dir=tmp_path, s3_client=client, s3_endpoint_url=f"http://127.0.0.1:{server.server_port}",
        s3_access_key_id="k", s3_secret_access_key="s", s3_max_attempts=3,
    )  # fmt: skip
    try:
        assert open_store("s3://bucket/p", settings).get("slice.dcm") == b"payload"
    finally:
        server.shutdown()
    assert seen == ["/bucket/p/slice.dcm"] * 2
