"""Durable files: the one implementation of create, fsync, atomic replace and directory fsync.

Every file whose loss or half-written state would matter after a crash (keys, trust state,
sessions, exported ledgers, the filesystem store's objects) goes through here, so the rules are
written once:

* the bytes go to a temporary file in the target's own directory (same file system, so the
  final step is a rename or a link, never a copy), written in full and fsynced;
* :func:`create_file` publishes it with a hard link, which fails if the name exists: the first
  writer wins and a reader never sees a half-written file; :func:`replace_file` and
  :func:`replacing` rename it over the old file: a reader sees the old file or the new one;
* the directory is then fsynced so the new name survives a crash -- where the platform allows
  it (:func:`fsync_directory`).

Standard library only: ``storage`` and the client use it as well as the service.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["create_file", "fsync_directory", "replace_file", "replacing", "write_all"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Errors of a file system (or platform) that cannot fsync a directory: the rename still stands.
_NO_DIRECTORY_FSYNC = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)


def fsync_directory(path: Path | str, *, os_name: str = os.name) -> bool:
    """Make the entries of directory ``path`` (a rename, a new file) durable; whether it could.

    Windows cannot open a directory for ``fsync`` (NTFS journals its metadata), and some file
    systems refuse it (EINVAL, ENOTSUP): there the rename stands as it is.

    Raises:
        OSError: The directory cannot be opened, or the fsync failed for another reason.
    """
    if os_name == "nt":
        return False
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in _NO_DIRECTORY_FSYNC:
            return False
        raise
    finally:
        os.close(fd)
    return True


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than it was given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _temporary(path: Path) -> Path:
    # Hidden, in the same directory, unique per writer.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _write_temporary(path: Path, data: bytes, mode: int) -> Path:
    temporary = _temporary(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temporary


def create_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` (with permissions ``mode``), durably and whole.

    Raises:
        FileExistsError: ``path`` exists (another writer was first; nothing was changed).
        OSError: The file could not be written.
    """
    temporary = _write_temporary(path, data, mode)
    try:
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (permissions ``mode``): a reader sees the old file or the
    new one, never half of one, and the new one survives a crash once this returns.

    Raises:
        OSError: The file could not be written (the old one, if any, is unchanged).
    """
    temporary = _write_temporary(path, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


@contextlib.contextmanager
def replacing(path: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Stream a file's new content: write to the handle; on a normal exit the content is
    fsynced and replaces ``path`` atomically (as :func:`replace_file`); on an exception
    ``path`` is unchanged and the partial content removed.

    Raises:
        OSError: The file could not be written.
    """
    temporary = _temporary(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)
