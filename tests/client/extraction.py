"""A test tree in the shape of a real phone extraction, made by the tests, and a byte-exact
snapshot of a tree (names as bytes, kinds, contents, link targets) to compare two of them.

Everything is created and read relative to open directories (``dir_fd``): the deep paths are
longer than PATH_MAX from the file system's root.
"""

from __future__ import annotations

import os
import random
import stat
import unicodedata

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

#: One component per class of issue 9.1 (as bytes, the way a file system holds them).
NAME_CLASSES: dict[str, bytes] = {
    "colon and reserved": b'IMG 2026-11-02 06:10:00 *?"<>|.jpg',
    "backslash": b"C:\\Users\\anna\\notes.txt",
    "trailing dot": b"trailing.",
    "trailing space": b"trailing ",
    "leading space": b" lead",
    "NFC": unicodedata.normalize("NFC", "caf\u00e9.txt").encode(),
    "NFD": unicodedata.normalize("NFD", "caf\u00e9.txt").encode(),
    "case A": b"Readme.TXT",
    "case B": b"README.txt",
    "case C": b"readme.txt",
    "greek": "κατάθεση.txt".encode(),
    "cjk": "証拠.png".encode(),
    "emoji": "😀.jpg".encode(),
    "bidi override": "invoice\u202etxt.exe".encode(),
    "zero width": "zero\u200bwidth".encode(),
    "C0 control": b"ctl\x01\x1b[31m",
    "C1 control": "c1\u0085\u009b".encode(),
    "newline": b"two\nlines",
    "carriage return": b"cr\rname",
    "backslash-n literal": b"lit\\nname",
    "percent": b"100% done",
    "percent escape look-alike": b"%41%FF",
    "latin-1 byte": b"bad\xffbyte.txt",
    "lone continuation": b"x\x80y",
    "surrogate bytes": b"\xed\xa0\x80",
    "overlong slash": b"\xc0\xafetc",
    "windows device": b"CON",
    "windows device ext": b"aux.txt",
    "our own folder": b".evx",
    "dots": b"...",
    "255 bytes": b"L" * 251 + b".bin",
}


def _mkdir(parent_fd: int, name: bytes) -> int:
    os.mkdir(name, 0o755, dir_fd=parent_fd)
    return os.open(name, _DIR, dir_fd=parent_fd)


def _write(parent_fd: int, name: bytes, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                 dir_fd=parent_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def make_extraction(root: bytes, *, bulk_files: int, outside_file: bytes,
                    outside_dir: bytes, seed: int = 17) -> int:
    """Create the tree at ``root`` (which must not exist); return how many items it holds."""
    rng = random.Random(seed)
    os.mkdir(root, 0o755)
    top = os.open(root, _DIR)
    count = 0
    try:
        names = _mkdir(top, b"names")
        for label, name in NAME_CLASSES.items():
            _write(names, name, label.encode() + b"\n")
            count += 1
        os.close(names)

        links = _mkdir(top, b"links")
        for name, target in ((b"inside", b"../names/README.txt"),
                             (b"inside-dir", b"../data"),
                             (b"outside-abs", outside_file),
                             (b"outside-dir", outside_dir),
                             (b"outside-rel", b"../../../../../../../../etc/hostname"),
                             (b"dangling", b"/nonexistent/sdcard"),
                             (b"self", b"self"),
                             (b"target\xffbytes", b"\xfe\xff/../x:y")):
            os.symlink(target, name, dir_fd=links)
            count += 1
        os.close(links)

        for name in (b"empty-1.bin", b"empty-2"):
            _write(top, name, b"")
            count += 1
        empty = _mkdir(top, b"empty-dir")
        os.close(empty)
        count += 1
        nested = _mkdir(top, b"nested-empty")
        inner = _mkdir(nested, b"a")
        os.close(_mkdir(inner, b"b"))  # only the deepest is an item: the others hold it
        os.close(inner)
        os.close(nested)
        count += 1

        # 30 levels; 13 of them 255-byte components: 3,985 bytes below the root.
        fd = _mkdir(top, b"deep")
        for level in range(30):
            name = (f"{level:02d}-".encode() + b"D" * 252) if level % 2 == 0 and level < 26 \
                else f"level-{level:02d}-xxxxxxx".encode()
            child = _mkdir(fd, name)
            os.close(fd)
            fd = child
        _write(fd, b"leaf.txt", b"thirty levels down\n")
        os.close(fd)
        count += 1

        data = _mkdir(top, b"data")
        per_dir = 250
        for d in range((bulk_files + per_dir - 1) // per_dir):
            sub = _mkdir(data, f"d{d:03d}".encode())
            for i in range(min(per_dir, bulk_files - d * per_dir)):
                _write(sub, f"f{d * per_dir + i:05d}.bin".encode(),
                       rng.randbytes(rng.randint(0, 48)))
                count += 1
            os.close(sub)
        os.close(data)
    finally:
        os.close(top)
    return count


def snapshot(root: bytes) -> dict[bytes, tuple[str, bytes]]:
    """Every entry below ``root``: relative path (bytes) -> (kind, content or link target)."""
    out: dict[bytes, tuple[str, bytes]] = {}

    def walk(fd: int, prefix: bytes) -> None:
        with os.scandir(fd) as scan:
            names = [os.fsencode(e.name) for e in scan]
        for name in names:
            path = prefix + name
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                out[path] = ("link", os.readlink(name, dir_fd=fd))
            elif stat.S_ISDIR(st.st_mode):
                out[path] = ("dir", b"")
                child = os.open(name, _DIR, dir_fd=fd)
                try:
                    walk(child, path + b"/")
                finally:
                    os.close(child)
            else:
                assert stat.S_ISREG(st.st_mode), path
                file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                try:
                    chunks = []
                    while block := os.read(file_fd, 1 << 20):
                        chunks.append(block)
                finally:
                    os.close(file_fd)
                out[path] = ("file", b"".join(chunks))

    top = os.open(root, _DIR)
    try:
        walk(top, b"")
    finally:
        os.close(top)
    return out
