"""The transfer display stays bounded: its height does not grow with the number of files, every
line fits the width, names are shortened in the middle and never carry control characters."""

from __future__ import annotations

import io

from rich.console import Console

from evx.cli.board import MAX_ACTIVE_ROWS, Board, shorten, visible

LONG = ("Extraktion_2026-11-02/Apple_iPhone_14_Pro/private/var/mobile/Containers/Data/"
        "Application/0A1B2C3D/Library/Caches/com.example.app/IMG 2026-11-02 06:10:00.jpg")


def _board(files: int, width: int = 80) -> tuple[Board, io.StringIO]:
    sink = io.StringIO()
    console = Console(file=sink, width=width, force_terminal=True, color_system=None)
    return Board(console, verb="uploading", files=files, total_bytes=files * 4096,
                 enabled=True), sink


def test_height_and_width_are_bounded_at_any_file_count() -> None:
    for files in (3, 2_000, 100_000):
        board, _ = _board(files)
        tasks = [board.start(f"uploading {LONG}-{i}", 4096) for i in range(min(files, 50))]
        for task in tasks[:10]:
            board.advance(task, 1000)
        for width in (40, 80, 200):
            lines = board.lines(width)
            assert len(lines) <= MAX_ACTIVE_ROWS + 2
            assert all(len(line) <= width for line in lines), lines
        lines = board.lines(80)
        assert lines[0].startswith(f"uploading 0/{files} files")
        assert "…" in lines[1] and lines[1].endswith("KiB")  # the name gave way, the size not
        if len(tasks) > MAX_ACTIVE_ROWS:
            assert lines[-1] == f"  … and {len(tasks) - MAX_ACTIVE_ROWS} more in flight"


def test_overall_line_counts_files_bytes_and_skips() -> None:
    board, _ = _board(3)
    task = board.start("uploading a.bin", 4096)
    board.advance(task, 4096)
    board.finish(task)
    board.file_done(4096, transferred=True)
    board.file_done(4096, transferred=False)  # skipped: already in the package
    check = board.start("checking c.bin", 4096)  # a local check is not a transfer
    board.advance(check, 4096)
    assert board.lines(80)[0].startswith("uploading 2/3 files  8.0 KiB/12.0 KiB")


def test_names_are_shortened_in_the_middle_and_made_visible() -> None:
    assert shorten("abcdefghij", 5) == "ab…ij"
    assert shorten("abc", 5) == "abc"
    assert visible("a\x1b[2Jb\u202e") == "a\\x1b[2Jb\\u202e"
    board, sink = _board(1)
    board.start("uploading evil\x1b[2J\x07name", 10)
    with board:
        pass
    assert "\x1b[2J" not in sink.getvalue() and "\x07" not in sink.getvalue()
