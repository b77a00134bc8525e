"""Rendering: ids are never wrapped at any width; one unit system (IEC) everywhere."""

from __future__ import annotations

from rich.console import Console

from evx.cli.render import add_row, size, table

PACKAGE = "pkg_08b8f8bea27cd70ea2932da2bced2a07"


def test_ids_stay_whole_on_a_narrow_terminal() -> None:
    t = table("id", "title", "case", "owner", "shared with", ids=("id",))
    add_row(t, PACKAGE, "Seized handset of the suspect", "BKA-2026-17", "DE-BKA", "FR-OCRTEH")
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(t)
    lines = console.export_text().splitlines()
    assert any(PACKAGE in line for line in lines)  # on one line, not folded
    assert "Seized" in "".join(lines) and max(len(line) for line in lines) <= 80


def test_sizes_use_iec_units() -> None:
    assert [size(n) for n in (0, 1023, 1024, 50 * 1024 * 1024, 3 * 1024 ** 4)] == \
        ["0 B", "1023 B", "1.0 KiB", "50.0 MiB", "3.0 TiB"]


def test_a_listing_too_narrow_for_whole_ids_becomes_records() -> None:
    from evx.cli.render import Column, fits, records, tsv

    columns = [Column("id", lambda r: r["id"], id=True), Column("title", lambda r: r["t"]),
               Column("case", lambda r: r["c"])]
    rows = [{"id": PACKAGE, "t": "Seized handset of the suspect", "c": "BKA-2026-17"}]
    # 1 + (3 + 36) + (3 + 10) + (3 + 10): the id whole, the others at least 10 wide
    assert fits(rows, columns, 66) and not fits(rows, columns, 65)
    assert records(rows * 2, columns).splitlines() == [
        f"id     {PACKAGE}", "title  Seized handset of the suspect", "case   BKA-2026-17", "",
        f"id     {PACKAGE}", "title  Seized handset of the suspect", "case   BKA-2026-17"]
    assert tsv([{"id": "x", "t": "a\tb\nc\u200b\\", "c": ""}], columns) == \
        "id\ttitle\tcase\nx\ta\\x09b\\x0ac\\u200b\\\t\n"
