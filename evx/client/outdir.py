"""The download folder (``-o``) as the client's own: nothing written outside it, no link followed
that the client did not create, no different existing file replaced.

Every path below ``-o`` is reached one component at a time from an open directory
(``openat``-style, ``dir_fd``) with ``O_NOFOLLOW``: a symbolic link planted anywhere on the way
-- a directory, the partial-download folder, a partial file -- is refused, never followed. A
partial file must be a regular file with one link that the client opened itself; a finished
file is hard-linked into place (which never replaces anything) and checked afterwards to be the
very inode that was written and verified. Every action is counted, so the command reports
exactly what it did.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections import Counter
from pathlib import Path

from evx.client.errors import LocalFileError, UsageError
from evx.protocol.localnames import PARTIAL_DIR, RECORD_DIR
from evx.protocol.names import display, encode_bytes

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
DIR_MODE = 0o755
PARTIAL_MODE = 0o600


class NotOurs(UsageError):
    """Something in the output folder that the client did not create is in the way."""

    slug = "output-not-ours"


class OutputFolder:
    """``-o DIR``, opened once; every later open is relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
            # -o itself is the user's choice (it may be a link they made); below it, nothing
            # is followed.
            self.fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
        except FileExistsError:
            raise LocalFileError(f"-o {root} exists and is not a directory",
                                 slug="output-not-a-directory") from None
        except NotADirectoryError:
            raise LocalFileError(f"-o {root}: a part of the path is a file, not a directory",
                                 slug="output-not-a-directory") from None
        except OSError as exc:
            raise UsageError(f"cannot use -o {root}: {exc.strerror}", slug="output") from None
        self.did: Counter[str] = Counter()

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def shown(self, parts: tuple[bytes, ...]) -> str:
        return display(encode_bytes(os.path.join(os.fsencode(self.root), *parts)))

    # -- directories ------------------------------------------------------------------------

    def directory(self, parts: tuple[bytes, ...], *, create: bool = True) -> int:
        """An open fd of the directory ``parts`` below ``-o``, created where missing.

        Raises:
            NotOurs: A component is a symbolic link or not a directory.
        """
        fd = os.dup(self.fd)
        try:
            for depth, part in enumerate(parts):
                if create:
                    try:
                        os.mkdir(part, DIR_MODE, dir_fd=fd)
                        self.did["directories created"] += 1
                    except FileExistsError:
                        pass
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise NotOurs(
                            f"{self.shown(parts[:depth + 1])} is a symbolic link or not a "
                            "directory, and evx did not create it: refusing to write through "
                            "it", hint="Move it away or choose another -o directory.") from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def lstat(self, parts: tuple[bytes, ...]) -> os.stat_result | None:
        """What is at ``parts`` (not following a link there), or None."""
        try:
            fd = self.directory(parts[:-1], create=False)
        except FileNotFoundError:
            return None
        try:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def open_existing(self, parts: tuple[bytes, ...]) -> int | None:
        """A regular file already at ``parts``, opened read-only without following a link;
        None if something else is there."""
        try:
            fd = self.directory(parts[:-1], create=False)
        except FileNotFoundError:
            return None
        try:
            got = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK,
                          dir_fd=fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(got).st_mode):
            os.close(got)
            return None
        return got

    # -- partial downloads ------------------------------------------------------------------

    @staticmethod
    def partial_key(name: str) -> bytes:
        """The partial file of an item: flat, short, whatever the item name."""
        return hashlib.sha256(name.encode("utf-8")).hexdigest()[:40].encode() + b".part"

    def open_partial(self, name: str) -> tuple[int, os.stat_result]:
        """The partial file of item ``name`` opened read-write (created if missing).

        Raises:
            NotOurs: It is a link, not a regular file, or has other hard links.
        """
        pfd = self.directory((PARTIAL_DIR.encode(),))
        key = self.partial_key(name)
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, PARTIAL_MODE,
                         dir_fd=pfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise NotOurs(f"{self.shown((PARTIAL_DIR.encode(), key))} is not a partial "
                              "file evx made (a link or not a regular file): refusing to "
                              "write to it", hint="Remove it and run the command again.") \
                    from None
            raise
        finally:
            os.close(pfd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise NotOurs(f"{self.shown((PARTIAL_DIR.encode(), key))} is not a partial file "
                          "evx made (another hard link to it exists): refusing to write to it",
                          hint="Remove it and run the command again.")
        return fd, st

    def drop_partial(self, name: str) -> None:
        pfd = self.directory((PARTIAL_DIR.encode(),), create=False)
        try:
            os.unlink(self.partial_key(name), dir_fd=pfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(pfd)

    def place(self, name: str, written: os.stat_result, parts: tuple[bytes, ...]) -> None:
        """Move the verified partial of ``name`` to ``parts``; never replaces anything.

        Raises:
            NotOurs: Something appeared at the destination (the verified copy stays partial).
        """
        key = self.partial_key(name)
        pfd = self.directory((PARTIAL_DIR.encode(),), create=False)
        dfd = self.directory(parts[:-1])
        try:
            try:
                os.link(key, parts[-1], src_dir_fd=pfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                raise NotOurs(f"{self.shown(parts)} appeared during the download; the "
                              "verified copy stays in the partial folder",
                              slug="exists") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # No hard links here: rename, after checking nothing is in the way.
                try:
                    os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    os.rename(key, parts[-1], src_dir_fd=pfd, dst_dir_fd=dfd)
                else:
                    raise NotOurs(f"{self.shown(parts)} appeared during the download",
                                  slug="exists") from None
            else:
                os.unlink(key, dir_fd=pfd)
            # Verify after writing: the name now holds the inode that was written and checked.
            placed = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            if (placed.st_dev, placed.st_ino) != (written.st_dev, written.st_ino) or \
                    not stat.S_ISREG(placed.st_mode):
                raise NotOurs(f"{self.shown(parts)} is not the file evx wrote and verified",
                              hint="Someone changed the output folder during the download.")
            os.fsync(dfd)
            os.fsync(pfd)
            self.did["files written"] += 1
        finally:
            os.close(pfd)
            os.close(dfd)

    # -- links and directories --------------------------------------------------------------

    def make_link(self, parts: tuple[bytes, ...], target: bytes) -> str:
        """Create the symbolic link ``parts`` -> ``target``; "present" when the same one is
        there already.

        Raises:
            NotOurs: Something else is there.
        """
        fd = self.directory(parts[:-1])
        try:
            try:
                os.symlink(target, parts[-1], dir_fd=fd)
            except FileExistsError:
                try:
                    if os.readlink(parts[-1], dir_fd=fd) == target:
                        return "present"
                except OSError:
                    pass
                raise NotOurs(f"{self.shown(parts)} already exists and is not this link",
                              hint="Move it away or choose another -o directory.",
                              slug="exists") from None
            self.did["links created"] += 1
            return "created"
        finally:
            os.close(fd)

    def make_directory(self, parts: tuple[bytes, ...]) -> str:
        before = self.did["directories created"]
        os.close(self.directory(parts))
        return "created" if self.did["directories created"] > before else "present"

    # -- the download record ----------------------------------------------------------------

    def write_record_file(self, package: str, filename: str, data: bytes) -> None:
        """Write ``.evx/<package>/<filename>`` atomically (temporary file, then rename)."""
        fd = self.directory((RECORD_DIR.encode(), package.encode()))
        temporary = f".{filename}.tmp".encode()
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=fd)
            out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                          0o644, dir_fd=fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(temporary, filename.encode(), src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
        finally:
            os.close(fd)
