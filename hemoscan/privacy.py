"""What of an object key may appear in logs and failure messages.

Object keys of clinical archives often carry identifiers (a patient ID or an accession number
as a folder name), so by default a key is shown as a short hash of itself: stable, so one key
can be followed through the logs, and ``hemoscan results`` maps it back for whoever may see
the database. ``HEMOSCAN_LOG_KEYS=true`` shows full keys, for archives known to be
de-identified.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}(\.gz)?$")


def key_ref(key: str) -> str:
    """``key:``, the first 12 hex digits of the key's SHA-256 and the key's file suffix
    (``key:1a2b3c4d5e6f.dcm``): never the key itself. The suffix stays because decoding reads
    it as a hint (a ``.dcm`` of random bytes is unreadable DICOM, not an unknown format)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    suffix = _SUFFIX.search(key.rsplit("/", 1)[-1])
    return f"key:{digest}{suffix.group(0).lower() if suffix else ''}"


def shown_key(key: str, full: bool) -> str:
    """The key as logs and messages may show it: itself when ``full``, else its ``key_ref``."""
    return key if full else key_ref(key)


def scrub(text: str, key: str, shown: str, *extra: str) -> str:
    """``text`` with every occurrence of ``key`` (and of ``extra`` spellings, such as the
    object's URI) replaced by ``shown``: for messages of libraries that quote the key."""
    for spelling in sorted((key, *extra), key=len, reverse=True):
        if spelling and spelling != shown:
            text = text.replace(spelling, shown)
    return text


def pseudonym(kind: str, value: str, key: bytes) -> str:
    """The keyed pseudonym of an identifier (a StudyInstanceUID, a SeriesInstanceUID):
    ``<kind>-`` and the first 24 hex digits of HMAC-SHA256(key, kind + value). Stable for one
    key, not reversible, and not linkable to the value without the key (a plain hash of a UID
    could be recomputed by anyone holding the UID)."""
    mac = hmac.new(key, f"{kind}\x00{value}".encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"{kind}-{mac.hexdigest()[:24]}"


_LOCATOR_INFO = b"hemoscan instance locator v1"
_LOCATOR_PREFIX = "v1."


class LocatorError(ValueError):
    """A locator that cannot be opened with this key (another key, or altered)."""


@lru_cache(maxsize=4)
def _locator_cipher(key: bytes):  # type: ignore[no-untyped-def]
    """The AEAD for ``key``, derived once per process (every listed and every retrieved
    instance seals or opens a locator; AESGCM objects keep no state between calls)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    # Its own key, derived from the pseudonym secret: one secret to keep, two uses kept apart.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LOCATOR_INFO).derive(key)
    return AESGCM(derived)


def seal_locator(parts: tuple[str, ...], object_key: str, key: bytes) -> str:
    """``parts`` (the UIDs a retrieval needs) encrypted and authenticated with AES-256-GCM
    under a key derived from ``key`` (the pseudonym secret), bound to ``object_key`` (the
    associated data: a locator copied to another row does not open there). Text, for a
    database column; random nonce, so equal UIDs give unequal locators."""
    import base64
    import os

    nonce = os.urandom(12)
    plain = "\x00".join(parts).encode("utf-8")
    sealed = _locator_cipher(key).encrypt(nonce, plain, object_key.encode("utf-8"))
    return _LOCATOR_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_locator(token: str, object_key: str, key: bytes) -> tuple[str, ...]:
    """The parts ``seal_locator`` sealed; ``LocatorError`` when the key or the object key is
    not the one it was sealed with, or the token was altered."""
    import base64
    import binascii

    from cryptography.exceptions import InvalidTag

    if not token.startswith(_LOCATOR_PREFIX):
        raise LocatorError("not a hemoscan locator")
    try:
        raw = base64.urlsafe_b64decode(token[len(_LOCATOR_PREFIX) :])
        plain = _locator_cipher(key).decrypt(raw[:12], raw[12:], object_key.encode("utf-8"))
    except (InvalidTag, binascii.Error, ValueError):
        raise LocatorError(
            "the locator does not open with this pseudonym key (another key, or altered)"
        ) from None
    return tuple(plain.decode("utf-8").split("\x00"))
