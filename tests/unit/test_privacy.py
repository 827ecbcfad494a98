"""hemoscan.privacy: what of an object key logs and failure messages may show."""

from __future__ import annotations

from hemoscan.privacy import key_ref, scrub, shown_key


def test_key_ref_is_stable_short_and_keeps_only_the_suffix():
    ref = key_ref("PATIENT-12345/ACC-777/IM0001.dcm")
    assert ref == key_ref("PATIENT-12345/ACC-777/IM0001.dcm")
    assert ref.startswith("key:") and ref.endswith(".dcm") and len(ref) == len("key:") + 12 + 4
    assert "PATIENT" not in ref and "ACC" not in ref and "IM0001" not in ref
    assert key_ref("a/IM0001") != key_ref("b/IM0001")
    assert key_ref("PACS/IM0001").count(".") == 0, "no suffix, nothing kept"


def test_full_keys_only_when_asked():
    assert shown_key("p/1.dcm", full=True) == "p/1.dcm"
    assert shown_key("p/1.dcm", full=False) == key_ref("p/1.dcm")


def test_scrub_replaces_every_spelling_longest_first():
    key = "PATIENT-1/x.dcm"
    text = f"cannot get s3://bucket/{key}: {key} timed out"
    out = scrub(text, key, "key:abc.dcm", f"s3://bucket/{key}")
    assert out == "cannot get key:abc.dcm: key:abc.dcm timed out"
