"""The same object-store interface over a real SeaweedFS bucket and a local folder."""

from __future__ import annotations

import pytest

from hemoscan.errors import ConfigurationError, ObjectMissing
from hemoscan.settings import load_settings
from hemoscan.storage import LocalStore, ObjectTooLarge, S3Store, open_store


@pytest.fixture(params=[pytest.param("s3", marks=pytest.mark.services), "local"])
def store(request, tmp_path):
    if request.param == "s3":
        settings = request.getfixturevalue("s3_settings")
        bucket = request.getfixturevalue("s3_bucket")
        return open_store(f"s3://{bucket}/archive/2024", settings)
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
    takes one ListObjectsV2 request per page (counted on the real client, against SeaweedFS)."""
    store = open_store(f"s3://{s3_bucket}/lazy", s3_settings)
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


def test_prefix_does_not_leak_into_a_sibling(s3_settings, s3_bucket):
    open_store(f"s3://{s3_bucket}/a", s3_settings).put("x", b"1")
    open_store(f"s3://{s3_bucket}/ab", s3_settings).put("y", b"2")
    assert [o.key for o in open_store(f"s3://{s3_bucket}/a", s3_settings).list()] == ["x"]


def test_locations_are_parsed(s3_settings, tmp_path):
    assert isinstance(open_store("s3://bucket/p/q", s3_settings), S3Store)
    assert open_store("s3://bucket/p/q", s3_settings).uri("k") == "s3://bucket/p/q/k"
    assert isinstance(open_store(str(tmp_path), s3_settings), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}", s3_settings), LocalStore)
    with pytest.raises(ConfigurationError):
        open_store("gs://bucket/x", s3_settings)
    with pytest.raises(ConfigurationError):
        open_store(tmp_path, s3_settings).get("../../etc/passwd")


def test_stores_share_one_lean_client(s3_settings, s3_bucket):
    """Source and output stores share one client; uploads skip the 100-continue handshake."""
    source = open_store(f"s3://{s3_bucket}/in", s3_settings)
    output = open_store(f"s3://{s3_bucket}/out", s3_settings)
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
