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


def test_pseudonyms_are_keyed_stable_and_say_their_kind():
    from hemoscan.privacy import pseudonym

    uid = "1.2.826.0.1.3680043.8.498.1"
    a = pseudonym("study", uid, b"k" * 32)
    assert a == pseudonym("study", uid, b"k" * 32) and a.startswith("study-") and len(a) == 30
    assert a != pseudonym("study", uid, b"j" * 32)  # another key, another pseudonym
    assert a != pseudonym("series", uid, b"k" * 32)  # kinds do not collide
    assert uid not in a and "3680043" not in a


def test_embedded_mode_keeps_one_generated_key_and_distributed_mode_requires_one(tmp_path):
    import stat

    import pytest

    from hemoscan.errors import ConfigurationError
    from hemoscan.settings import load_settings

    settings = load_settings(data_dir=tmp_path)
    key = settings.effective_pseudonym_key()
    assert len(key) == 64 and load_settings(data_dir=tmp_path).effective_pseudonym_key() == key
    assert stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode) == 0o600
    given = load_settings(data_dir=tmp_path, pseudonym_key="s" * 20)
    assert given.effective_pseudonym_key() == b"s" * 20
    with pytest.raises(ConfigurationError, match="at least 16"):
        load_settings(pseudonym_key="short").effective_pseudonym_key()
    distributed = load_settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="PSEUDONYM_KEY is required"):
        distributed.effective_pseudonym_key()
