"""Local files: what to upload under which item name, and where a downloaded item may go.

Item names are posix relative paths (``dir/file.ext``). The same rules as the service's are
checked here before any byte is sent, and again on download before an item name becomes a path:
the client never trusts a server-supplied name to stay inside the output directory.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from evx.client.errors import UsageError

MAX_NAME_BYTES = 512
MAX_SEGMENT_BYTES = 255
_FORBIDDEN_CHARS = frozenset('\\:*?"<>|')
PARTIAL_DIR = ".evx-partial"


def check_item_name(name: str) -> str:
    """``name`` if it is a safe relative item name, else :class:`UsageError` saying why."""
    def bad(why: str) -> UsageError:
        return UsageError(f"item name {name!r} is not acceptable: {why}",
                          hint="Rename the file (item names are relative paths without "
                               "\\ : * ? \" < > | or control characters).", slug="bad-name")

    if not name:
        raise bad("empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise bad(f"longer than {MAX_NAME_BYTES} bytes")
    if unicodedata.normalize("NFC", name) != name:
        raise bad("not in Unicode NFC form")
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            raise bad("control or invalid character")
        if ch in _FORBIDDEN_CHARS:
            raise bad(f"reserved character {ch!r}")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise bad("empty, '.' or '..' path segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise bad(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
        if segment != segment.strip():
            raise bad("a path segment starts or ends with white space")
    if name.split("/")[0] == PARTIAL_DIR:
        raise bad(f"{PARTIAL_DIR} is reserved for partial downloads")
    return name


@dataclass(frozen=True)
class Source:
    """One local file to upload as item ``name``."""

    path: Path
    name: str
    size: int


def _regular_file(path: Path, shown: str) -> int:
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read {shown}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{shown} is not a regular file (devices, sockets and FIFOs are not "
                         "uploaded)")
    return st.st_size


def collect_sources(paths: list[Path]) -> list[Source]:
    """Files to upload: a file as its own name; a directory recursively as ``<dir>/<relative
    path>``. Symbolic links pointing outside their directory are refused (the upload would carry
    files the user did not mean to send); links within it are uploaded under the link's name.

    Raises:
        UsageError: A missing path, a special file, an escaping link, a bad or duplicate name.
    """
    found: list[Source] = []
    for given in paths:
        if given.is_symlink() and given.is_dir():
            raise UsageError(f"{given} is a symbolic link to a directory; give the directory "
                             "itself")
        if given.is_dir():
            root = given.resolve()
            prefix = unicodedata.normalize("NFC", root.name or "root")
            for dirpath, dirnames, filenames in os.walk(given, followlinks=False):
                dirnames.sort()
                here = Path(dirpath)
                for entry in sorted(filenames) + [d for d in dirnames
                                                  if (here / d).is_symlink()]:
                    path = here / entry
                    relative = path.relative_to(given)
                    if path.is_symlink():
                        target = path.resolve()
                        if not target.is_relative_to(root):
                            raise UsageError(
                                f"{path} is a symbolic link to {target}, outside {given}; "
                                "refusing to upload it", hint="Remove the link or copy the "
                                "file into the directory.", slug="link-escapes")
                        if target.is_dir():
                            continue  # its files are uploaded under their real path
                    name = unicodedata.normalize("NFC", str(PurePosixPath(prefix,
                                                                          *relative.parts)))
                    found.append(Source(path, check_item_name(name),
                                        _regular_file(path, str(path))))
        else:
            if not given.exists():
                raise UsageError(f"{given}: no such file or directory")
            name = unicodedata.normalize("NFC", given.name)
            found.append(Source(given, check_item_name(name),
                                _regular_file(given, str(given))))
    seen: set[str] = set()
    for source in found:
        if source.name in seen:
            raise UsageError(f"two files would be uploaded as item {source.name!r}")
        seen.add(source.name)
    if not found:
        raise UsageError("nothing to upload (empty directory?)")
    return found


def destination(out_dir: Path, name: str) -> tuple[Path, Path]:
    """Where item ``name`` goes under ``out_dir``, and where its partial download is kept.

    Raises:
        UsageError: The name (from the server) is not a safe relative path.
    """
    check_item_name(name)
    parts = PurePosixPath(name).parts
    final = out_dir.joinpath(*parts)
    partial = out_dir.joinpath(PARTIAL_DIR, *parts[:-1], parts[-1] + ".part")
    return final, partial
