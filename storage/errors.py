"""Every error the storage layer raises, in one hierarchy.

Grouped by where the problem comes from, as in python-tuf:

* ``IntegrityError`` and its subclasses: the *stored bytes* are not authentic (tampered,
  truncated, swapped, bound to another item, or no key we hold can open them). These are opaque on
  purpose: they carry a ``reason`` for logs but never any plaintext.
* ``ObjectNotFound`` / ``BackendUnavailable``: the *object store* could not deliver.
* ``KeySourceError``: the *key material* could not be loaded or persisted.

Caller misuse (a malformed object name, a negative offset, an id that is too long) is a plain
``ValueError``. No error here carries an HTTP status; the service maps them in one place.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by ``storage``."""


class IntegrityError(StorageError):
    """A stored object is not authentic, or cannot be proven authentic with the keys we hold.

    ``reason`` is a short, plaintext-free explanation meant for logs, not for end users.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthenticationFailed(IntegrityError):
    """An encrypted chunk failed authentication, or the content header differs from the one its
    key envelope vouches for: tampered bytes, reordered/duplicated/dropped chunks, or an object
    moved between items or packages."""


class TruncatedObject(IntegrityError):
    """The content ended before its final chunk: everything yielded before was authentic, but
    the item is incomplete."""


class TrailingData(IntegrityError):
    """Bytes follow the final chunk of the content."""


class MalformedObject(IntegrityError):
    """A key envelope (or content header) is not in the format at all: bad magic, unsupported
    version, or framing that does not parse."""


class KeyUnwrapFailed(IntegrityError):
    """A key-encryption key named by the envelope is in the keyring, but the wrapped data key
    does not authenticate under it: the key material is wrong, or the envelope was tampered with
    or moved to another item."""


class UnknownKey(IntegrityError):
    """None of the key-encryption keys the envelope names is in the keyring (retired, removed,
    or never configured here). ``key_ids`` lists the ids the envelope asked for."""

    def __init__(self, reason: str, key_ids: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.key_ids = key_ids


class ObjectNotFound(StorageError):
    """No object of that name exists in the store."""

    def __init__(self, name: str) -> None:
        super().__init__(f"object not found: {name}")
        self.name = name


class BackendUnavailable(StorageError):
    """The object store could not be reached or failed (S3 down, connection reset, disk error)."""


class KeySourceError(StorageError):
    """Key material could not be loaded or saved: unreadable or malformed key files, no active
    key, or a read-only source asked to store a new key."""
