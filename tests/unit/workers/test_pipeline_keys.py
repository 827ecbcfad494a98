"""One bad key fails one image: per-key store errors become that key's failure row, and no
message carries the key itself (keys may hold identifiers)."""

from __future__ import annotations

import sqlite3

import pytest

from hemoscan.errors import ConfigurationError, StorageError
from hemoscan.privacy import key_ref
from hemoscan.storage import LocalStore
from tests.utils.archive import make_phantoms
from tests.utils.stack import run_cli
from workers.pipeline import Item, _fetch

SECRET_KEY = "PATIENT-12345/ct/slice.dcm"


def _item(key: str = SECRET_KEY) -> Item:
    return Item(key=key, scan_id=1, shown=key_ref(key))


class BrokenStore:
    """A store whose get raises what a real one raises for a whole bucket or a network fault."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        raise self.exc

    def uri(self, key: str) -> str:
        return f"s3://bucket/{key}"


def test_a_key_escaping_the_folder_is_a_bad_key(tmp_path):
    item = _item("../../etc/passwd")
    assert _fetch(LocalStore(tmp_path), item, 1000) is None
    assert item.reason == "bad_key" and "passwd" not in (item.message or "")
    assert item.message and item.message.startswith(item.shown)


def test_a_key_with_a_nul_byte_is_a_bad_key(tmp_path):
    item = _item("a\x00b.dcm")
    assert _fetch(LocalStore(tmp_path), item, 1000) is None
    assert item.reason == "bad_key"


def test_a_missing_bucket_is_a_retryable_config_failure_of_that_key():
    item = _item()
    store = BrokenStore(ConfigurationError("bucket does not exist: s3://bucket"))
    assert _fetch(store, item, 1000) is None  # type: ignore[arg-type]
    assert item.reason == "config" and "bucket does not exist" in (item.message or "")


def test_a_transient_error_quoting_the_key_is_scrubbed():
    item = _item()
    store = BrokenStore(StorageError(f"cannot get s3://bucket/{SECRET_KEY}: timed out"))
    assert _fetch(store, item, 1000) is None  # type: ignore[arg-type]
    assert item.reason is None and item.transient is not None
    assert "PATIENT" not in item.transient and item.shown in item.transient


@pytest.mark.slow
def test_manifest_with_one_escaping_key_scores_the_rest(base_env, tmp_path):
    """Embedded mode, real CLI: a manifest names three phantoms and one key that escapes the
    source folder. Round 1 failed the whole batch; now that key alone fails, as bad_key."""
    folder = tmp_path / "archive"
    files = make_phantoms(folder, 3)
    manifest = tmp_path / "keys.csv"
    keys = [p.name for p in files] + ["../outside/PATIENT-12345.dcm"]
    manifest.write_text("\n".join(keys) + "\n")
    out = run_cli(["scan", str(folder), "--manifest", str(manifest), "--job", "keys"], base_env)
    assert "PATIENT-12345" not in out.stderr + out.stdout
    with sqlite3.connect(tmp_path / "data" / "hemoscan.db") as conn:
        scored = {
            k
            for (k,) in conn.execute(
                "SELECT s.object_key FROM scans s JOIN predictions p ON p.scan_id = s.id"
            )
        }
        failed = dict(
            conn.execute(
                "SELECT s.object_key, f.reason FROM scans s JOIN failures f ON f.scan_id = s.id"
            )
        )
    assert scored == {p.name for p in files}
    assert failed == {"../outside/PATIENT-12345.dcm": "bad_key"}
