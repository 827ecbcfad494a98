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
