"""What to upload: files, symbolic links and empty directories under their exact names.

Item names are the path bytes as the file system gives them (nothing normalised or renamed),
written in the text form of :mod:`evx.protocol.names`. A directory is walked without following
any symbolic link: a link becomes a link item (its target recorded, whether it points inside
the directory, outside it or nowhere), unless ``follow_links`` asks for what it points to.
Every directory is opened relative to its parent (``openat``) with ``O_NOFOLLOW``, so paths
deeper than PATH_MAX work and nothing swapped in behind the walk is followed; each file is
later opened once the same way and checked to be the very file that was listed (device and
inode, size and modification time).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evx.client.errors import UsageError
from evx.protocol.names import InvalidName, check_name, check_target, display, encode_bytes

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | \
    getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not block the open


@dataclass(frozen=True)
class Source:
    """One item to upload: a file, a link or an empty directory."""

    name: str  # text form
    kind: str  # "file" | "link" | "directory"
    root: bytes  # the directory given on the command line (or the file's parent)
    parts: tuple[bytes, ...]  # path below ``root``
    size: int = 0
    target: str | None = None  # a link's target, text form
    identity: tuple[int, int, int] | None = None  # st_dev, st_ino, st_mtime_ns when listed
    given: bool = False  # named on the command line: its path is the user's, links followed

    @property
    def path(self) -> Path:
        """Where it is, for messages (may exceed PATH_MAX: never opened by this path)."""
        return Path(os.fsdecode(os.path.join(self.root, *self.parts)))

    @property
    def shown(self) -> str:
        return display(encode_bytes(os.path.join(self.root, *self.parts)))


def _checked(name: str, shown: str) -> str:
    try:
        check_name(name)
    except InvalidName as exc:
        raise UsageError(f"{shown} cannot be an item: {exc}", slug="bad-name") from None
    return name


def _link_source(root: bytes, parts: tuple[bytes, ...], name: str, target: bytes,
                 shown: str) -> Source:
    text = encode_bytes(target)
    try:
        check_target(text)
    except InvalidName as exc:
        raise UsageError(f"{shown}: {exc}", slug="bad-name") from None
    return Source(_checked(name, shown), "link", root, parts, len(target), text)


def _walk(root: bytes, prefix: bytes, dir_fd: int, parts: tuple[bytes, ...],
          follow_links: bool, found: list[Source]) -> None:
    with os.scandir(dir_fd) as scan:
        entries = sorted(scan, key=lambda e: os.fsencode(e.name))
    if not entries and parts:
        name = encode_bytes(b"/".join((prefix, *parts)))
        found.append(Source(_checked(name, display(name)), "directory", root, parts))
        return
    for entry in entries:
        raw = os.fsencode(entry.name)
        here = (*parts, raw)
        name = encode_bytes(b"/".join((prefix, *here)))
        shown = display(encode_bytes(os.path.join(root, *here)))
        st = os.stat(raw, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) and follow_links:
            try:
                st = os.stat(raw, dir_fd=dir_fd, follow_symlinks=True)
            except OSError:
                found.append(_link_source(root, here, name, os.readlink(raw, dir_fd=dir_fd),
                                          shown))  # dangling: still a link
                continue
            if stat.S_ISDIR(st.st_mode):
                raise UsageError(f"{shown} is a symbolic link to a directory; --follow-links "
                                 "follows links to files only", slug="link-to-directory")
        if stat.S_ISLNK(st.st_mode):
            found.append(_link_source(root, here, name, os.readlink(raw, dir_fd=dir_fd), shown))
        elif stat.S_ISDIR(st.st_mode):
            child = os.open(raw, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _walk(root, prefix, child, here, follow_links, found)
            finally:
                os.close(child)
        elif stat.S_ISREG(st.st_mode):
            found.append(Source(_checked(name, shown), "file", root, here, st.st_size,
                                identity=(st.st_dev, st.st_ino, st.st_mtime_ns)))
        else:
            raise UsageError(f"{shown} is not a regular file, link or directory (devices, "
                             "sockets and FIFOs are not uploaded)", slug="special-file")


def collect_sources(paths: list[Path], *, follow_links: bool = False) -> list[Source]:
    """Items to upload: a file under its own name; a directory recursively as
    ``<dir>/<relative path>``, its links as link items and its empty directories as directory
    items.

    Raises:
        UsageError: A missing path, a special file, a name over the limits, a duplicate name.
    """
    found: list[Source] = []
    for given in paths:
        raw = os.fsencode(given)
        shown = display(encode_bytes(raw))
        try:
            st = os.lstat(raw)
        except FileNotFoundError:
            raise UsageError(f"{shown}: no such file or directory") from None
        except OSError as exc:
            raise UsageError(f"cannot read {shown}: {exc.strerror}") from None
        parent, base = os.path.split(raw.rstrip(b"/") or raw)
        if stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(raw)
            except OSError:
                st = None  # type: ignore[assignment]
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise UsageError(f"{shown} is a symbolic link to a directory; give the "
                                 "directory itself")
            if st is None or not stat.S_ISREG(st.st_mode):
                found.append(_link_source(parent, (base,), encode_bytes(base),
                                          os.readlink(raw), shown))
                continue
        if stat.S_ISDIR(st.st_mode):
            prefix = os.path.basename(os.path.abspath(raw)) or b"root"
            fd = os.open(raw, _DIR_FLAGS)
            try:
                _walk(raw, prefix, fd, (), follow_links, found)
            finally:
                os.close(fd)
            continue
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{shown} is not a regular file (devices, sockets and FIFOs are "
                             "not uploaded)", slug="special-file")
        # A file given by path (a link to one is the user's choice: it is read, like cp).
        found.append(Source(_checked(encode_bytes(base), shown), "file", parent or b".",
                            (base,), st.st_size, given=True,
                            identity=(st.st_dev, st.st_ino, st.st_mtime_ns)))
    _no_duplicates(found)
    if not found:
        raise UsageError("nothing to upload")
    return found


def _no_duplicates(found: list[Source]) -> None:
    seen: set[str] = set()
    for source in found:
        if source.name in seen:
            raise UsageError(f"two paths would be uploaded as item {display(source.name)}")
        seen.add(source.name)


@contextmanager
def open_source(source: Source) -> Iterator[int]:
    """Open a file source once, read-only, without following links at any level of its path
    below the given directory, and check it is the file that was listed.

    Raises:
        UsageError: It is gone, or something else is there now (replaced, a link, changed).
    """
    fd = -1
    try:
        if source.given:
            fd = os.open(os.path.join(source.root, *source.parts), _FILE_FLAGS & ~getattr(
                os, "O_NOFOLLOW", 0))
        else:
            dir_fd = os.open(source.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                for part in source.parts[:-1]:
                    child = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
                    os.close(dir_fd)
                    dir_fd = child
                fd = os.open(source.parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise UsageError(f"cannot open {source.shown} without following links: "
                         f"{exc.strerror}", hint="The folder changed while it was uploaded; "
                         "check it and run the command again.", slug="source-changed") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (source.identity is not None and (
                (st.st_dev, st.st_ino, st.st_mtime_ns) != source.identity
                or st.st_size != source.size)):
            raise UsageError(f"{source.shown} is not the file listed a moment ago (replaced, "
                             "or changed since)", hint="The folder changed while it was "
                             "uploaded; check it and run the command again.",
                             slug="file-changed")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)
