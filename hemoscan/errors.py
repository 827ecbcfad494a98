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
