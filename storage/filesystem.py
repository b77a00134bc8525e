"""``FileSystemStore``: objects as files under one root directory, written atomically.

A write goes to a hidden temporary file in the object's own directory, is fsynced, renamed over
the final name and the directory is fsynced, so after a crash either the whole object or nothing
is there. Hidden names never match ``OBJECT_NAME_PATTERN``, so temporaries are never listed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from evx import durable
from storage.errors import BackendUnavailable, ObjectNotFound
from storage.objectstore import (
    OBJECT_NAME_PATTERN,
    validate_object_name,
    validate_prefix,
    validate_range,
)

READ_SIZE = 1 << 20  # bytes per read(); bounds memory per open object
TEMP_PREFIX = ".tmp-"
# Start writeback of every this many bytes while writing, so the disk works while the next bytes
# are encrypted and the final fsync has little left to do (like RocksDB's bytes_per_sync).
WRITEBACK_BYTES = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def start_writeback(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # advisory: errors are ignored

    return start_writeback


_start_writeback = _load_sync_file_range()


class FileSystemStore:
    """An ``ObjectStore`` on a local (or mounted) filesystem rooted at ``root``."""

    def __init__(self, root: str | os.PathLike[str], *, read_size: int = READ_SIZE) -> None:
        """Use ``root`` (created if missing) as the store's directory.

        Raises:
            BackendUnavailable: the root cannot be created.
            ValueError: ``read_size`` is not positive.
        """
        if read_size <= 0:
            raise ValueError("read_size must be positive")
        self.root = Path(root)
        self.read_size = read_size
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create store root {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"FileSystemStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root / validate_object_name(name)

    def put(self, name: str, chunks: Iterable[bytes]) -> int:
        """Atomically store the concatenation of ``chunks`` as ``name``; return its size.

        Raises:
            BackendUnavailable: a filesystem error (the temporary file is removed).
            ValueError: malformed name.
        """
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create {name}: {exc}") from exc
        written = flushed = 0
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                        written += n
                    if _start_writeback is not None and written - flushed >= WRITEBACK_BYTES:
                        _start_writeback(fd, flushed, written - flushed)
                        flushed = written
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            durable.fsync_directory(path.parent)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if isinstance(exc, OSError):
                raise BackendUnavailable(f"cannot write {name}: {exc}") from exc
            raise
        return written

    def get(self, name: str, offset: int = 0, length: int | None = None, *,
            piece_size: int | None = None) -> Iterator[bytes]:
        """Stream a byte range of ``name`` (the file is opened by this call) in pieces of
        ``piece_size`` bytes (default ``read_size``).

        Raises:
            ObjectNotFound: no such object.
            BackendUnavailable: a filesystem error (also while iterating).
            ValueError: malformed name, negative offset or length, ``piece_size`` below 1.
        """
        validate_range(offset, length, piece_size)
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ObjectNotFound(name) from exc
        except OSError as exc:
            raise BackendUnavailable(f"cannot open {name}: {exc}") from exc
        return self._read(fd, name, offset, length, piece_size or self.read_size)

    def _read(self, fd: int, name: str, offset: int, length: int | None,
              piece_size: int) -> Iterator[bytes]:
        try:
            remaining = -1 if length is None else length
            position = offset
            while remaining:
                want = piece_size if remaining < 0 else min(piece_size, remaining)
                data = os.pread(fd, want, position)
                if not data:
                    return
                position += len(data)
                if remaining > 0:
                    remaining -= len(data)
                yield data
        except OSError as exc:
            raise BackendUnavailable(f"cannot read {name}: {exc}") from exc
        finally:
            os.close(fd)

    def delete(self, name: str) -> None:
        """Remove ``name`` if present.

        Raises:
            BackendUnavailable: a filesystem error other than "not there".
            ValueError: malformed name.
        """
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendUnavailable(f"cannot delete {name}: {exc}") from exc

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists.

        Raises:
            ValueError: malformed name.
        """
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        """Size of ``name`` in bytes.

        Raises:
            ObjectNotFound: no such object.
            BackendUnavailable: a filesystem error.
            ValueError: malformed name.
        """
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(name) from exc
        except OSError as exc:
            raise BackendUnavailable(f"cannot stat {name}: {exc}") from exc

    def remove_stale_temporaries(self, older_than_seconds: float, *,
                                 now: float | None = None) -> int:
        """Delete temporary files a killed writer left (a crash between create and rename).

        Only files not modified for ``older_than_seconds`` are removed, so writes in progress
        (in this or another process) are never touched. Returns how many were removed.

        Raises:
            BackendUnavailable: a directory cannot be read.
            ValueError: a negative age.
        """
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must be >= 0")
        cutoff = (time.time() if now is None else now) - older_than_seconds
        removed = 0
        try:
            for directory, _dirs, filenames in os.walk(self.root, onerror=_raise):
                for filename in filenames:
                    if not filename.startswith(TEMP_PREFIX):
                        continue
                    path = Path(directory) / filename
                    try:
                        if path.stat().st_mtime < cutoff:
                            path.unlink()
                            removed += 1
                    except FileNotFoundError:
                        continue  # renamed or removed meanwhile
        except OSError as exc:
            raise BackendUnavailable(f"cannot sweep {self.root}: {exc}") from exc
        return removed

    def list(self, prefix: str = "") -> Iterator[str]:
        """Names of all objects starting with ``prefix`` (order unspecified).

        Raises:
            BackendUnavailable: a directory cannot be read.
            ValueError: the prefix cannot begin any object name.
        """
        validate_prefix(prefix)
        try:
            for directory, dirnames, filenames in os.walk(self.root, onerror=_raise):
                relative = Path(directory).relative_to(self.root).as_posix()
                base = "" if relative == "." else relative + "/"
                # prune directories that cannot contain a match
                dirnames[:] = [
                    d
                    for d in dirnames
                    if (base + d + "/").startswith(prefix) or prefix.startswith(base + d + "/")
                ]
                for filename in filenames:
                    name = base + filename
                    if name.startswith(prefix) and OBJECT_NAME_PATTERN.fullmatch(name):
                        yield name
        except OSError as exc:
            raise BackendUnavailable(f"cannot list {self.root}: {exc}") from exc

    def check(self) -> None:
        """Write, fsync and remove a probe file under the root.

        Raises:
            BackendUnavailable: the root is missing, read-only or failing.
        """
        probe = self.root / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise BackendUnavailable(f"store root {self.root} is not writable: {exc}") from exc


def _raise(exc: OSError) -> None:
    raise exc
