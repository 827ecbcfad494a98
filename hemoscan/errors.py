"""Typed errors shared across hemoscan. Each carries a reason a person can act on."""

from __future__ import annotations


class HemoscanError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class ConfigurationError(HemoscanError):
    """A setting is missing or invalid."""


class StorageError(HemoscanError):
    """The object store failed in a way that may be transient (network, server error)."""


class ObjectMissing(HemoscanError):
    """The object does not exist at the given location."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"object not found: {uri}")
        self.uri = uri


class InvalidKey(ConfigurationError):
    """An object key this store can never read (e.g. one that escapes the source folder)."""


class ObjectTooLarge(StorageError):
    """The object is bigger than the configured byte limit (not retried: it is bad input)."""

    def __init__(self, uri: str, size: int, limit: int) -> None:
        super().__init__(f"object is {size} bytes, over the {limit}-byte limit: {uri}")
        self.size = size
        self.limit = limit
