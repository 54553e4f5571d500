"""Storage exceptions.

StorageError
├── RedisUnavailable      Redis could not be reached after retries
├── DatabaseUnavailable   the SQL database could not be reached
├── LeaseLost             a lease expired or was taken by another holder
├── NotFound              a row that was asked for does not exist
└── Conflict              a unique key was already taken (someone else wrote it first)
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class for storage failures callers may want to handle."""


class RedisUnavailable(StorageError):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Redis is unavailable: {detail}")


class DatabaseUnavailable(StorageError):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"the database is unavailable: {detail}")


class LeaseLost(StorageError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"lease {name!r} is no longer held")


class NotFound(StorageError):
    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key!r} not found")


class Conflict(StorageError):
    """A write lost to another writer: the unique key it needed was already taken."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}: already recorded by another writer")
