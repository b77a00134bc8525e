"""Rendering, in one place: results to stdout (rich by default, one JSON document with
``--json`` or ``-o json``, tab-separated lines with ``-o tsv``), notes, errors and progress to
stderr; sizes in one unit system (IEC: KiB, MiB, GiB) in bars and summaries alike; tables whose
ids are never wrapped (other columns fold, or with ``--wide`` show every column unfolded).

A list or show command describes its rows once, as :class:`Column` s, and hands them to
:meth:`Output.rows`: the table, the TSV and the JSON document all come from there."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from evx.cli.exits import Failure

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")

#: What ``-o`` accepts: the human table (default), one JSON document, tab-separated values.
OUTPUT_FORMATS = ("table", "json", "tsv")
#: A --wide table is laid out on a line this long: no column is ever folded.
WIDE_WIDTH = 100_000
#: Narrower than this, a folded column is unreadable: the listing is shown as records instead.
MIN_FOLDED_WIDTH = 10


def size(n: float) -> str:
    """``n`` bytes in IEC units: ``512 B``, ``1.5 KiB``, ``50.0 MiB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(value: Any) -> str:
    """An ISO 8601 time from the service, shown as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime(
            "%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return str(value)


def table(*columns: str, ids: tuple[str, ...] = (), title: str | None = None) -> Table:
    """A table whose ``ids`` columns are never wrapped or cut (ids are copied by hand); the
    other columns fold when the terminal is narrow."""
    t = Table(*columns, title=escape(title) if title else None)
    for column in t.columns:
        if column.header in ids:
            column.no_wrap = True
            column.overflow = "ignore"
            column.min_width = None
        else:
            column.overflow = "fold"
    return t


def add_row(t: Table, *cells: str) -> None:
    """Add a row of server-supplied text, escaped so names cannot inject rich markup."""
    t.add_row(*(escape(c) for c in cells))


@dataclass(frozen=True)
class Column:
    """One column of a listing: its header, how a row (a JSON object) becomes its cell text,
    whether it is an id (never wrapped or cut) and whether only ``--wide`` (and TSV) show it."""

    header: str
    cell: Callable[[Any], str]
    id: bool = False
    wide: bool = False


def tsv_cell(text: str) -> str:
    """A cell of a TSV line: characters that could hide text or break the line (tab, newline,
    bidi and zero-width ones, ...) shown as ``\\x09``-style escapes, as names are displayed, so a
    line is always one row and ``cut -f`` finds its columns. Names come already displayed;
    exact values are in ``-o json``."""
    from evx.protocol.names import display

    return "".join(ch if ch.isprintable() else display(ch) for ch in text)


def tsv(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    """A header line and one line per row, every column (wide ones too)."""
    lines = ["\t".join(tsv_cell(c.header) for c in columns)]
    lines += ["\t".join(tsv_cell(c.cell(row)) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def fits(rows: Sequence[Any], columns: Sequence[Column], width: int) -> bool:
    """Whether a table of ``rows`` fits ``width`` with every id whole and every other column at
    least :data:`MIN_FOLDED_WIDTH` wide (a box line and two spaces of padding per column)."""
    needed = 1
    for c in columns:
        natural = max([len(c.header), *(len(c.cell(row)) for row in rows)])
        needed += 3 + (natural if c.id else min(natural, MIN_FOLDED_WIDTH))
    return needed <= width


def records(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    """``rows`` one block each (``header  value`` per line, a blank line between rows): for a
    terminal too narrow for the table; every value, ids included, whole on its line."""
    width = max(len(c.header) for c in columns)
    return "\n\n".join("\n".join(f"{c.header:<{width}}  {c.cell(row)}".rstrip()
                                 for c in columns) for row in rows)


def listing(rows: Sequence[Any], columns: Sequence[Column], *, wide: bool = False,
            title: str | None = None) -> Table:
    """The human table of ``rows``: ids whole; with ``wide`` every column and nothing folded,
    else the narrow columns only, folding when the terminal is narrow."""
    shown = [c for c in columns if wide or not c.wide]
    t = table(*(c.header for c in shown), ids=tuple(c.header for c in shown if c.id or wide),
              title=title)
    for row in rows:
        add_row(t, *(c.cell(row) for c in shown))
    return t


class Output:
    """Where a command writes: results to stdout, progress, notes and errors to stderr."""

    def __init__(self, *, as_json: bool = False, quiet: bool = False, fmt: str = "table",
                 wide: bool = False) -> None:
        from evx.client.errors import UsageError

        if fmt not in OUTPUT_FORMATS:
            raise UsageError(f"-o {fmt}: give one of {', '.join(OUTPUT_FORMATS)}",
                             slug="usage")
        self.as_json = as_json or fmt == "json"
        self.tsv = fmt == "tsv" and not as_json
        self.quiet = quiet
        self.wide = wide
        self.out = Console(highlight=False, soft_wrap=True, width=WIDE_WIDTH if wide else None)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def rows(self, data: Any, rows: Sequence[Any], columns: Sequence[Column], *,
             empty: str, title: str | None = None) -> None:
        """A listing: ``data`` as the JSON document, ``rows`` as TSV or as a table (``empty``
        when there are none)."""
        if self.as_json:
            self.result(data)
        elif self.tsv:
            sys.stdout.write(tsv(rows, columns))
            sys.stdout.flush()
        elif self.quiet:
            return
        elif not rows:
            self.out.print(escape(empty))
        elif self.wide or fits(rows, [c for c in columns if not c.wide], self.out.width):
            self.out.print(listing(rows, columns, wide=self.wide, title=title))
        else:  # ids whole and other columns readable do not both fit: one block per row
            shown = [c for c in columns if not c.wide]
            self.out.print(escape((f"{title}\n" if title else "") + records(rows, shown)))

    def note(self, text: str) -> None:
        """A human note (stderr); silent with --json or --quiet."""
        if not (self.as_json or self.quiet):
            self.err.print(text)

    def warn(self, text: str) -> None:
        """Something the user should know even in a script (stderr; silent only with --quiet):
        retries, a partial download kept."""
        if not self.quiet:
            self.err.print(escape(text))

    def result(self, data: Any, human: Any = None) -> None:
        """The command's result: one JSON document with --json, else the renderable/text."""
        if self.as_json:
            document = {"ok": True, **data} if isinstance(data, dict) else data
            sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
            sys.stdout.flush()
        elif not self.quiet and human is not None:
            self.out.print(human)

    def failure(self, failure: Failure) -> None:
        """A failed command: one line (and advice) on stderr; the JSON document with --json."""
        self.err.print(f"[bold red]error:[/bold red] {escape(failure.message)}")
        if failure.hint:
            self.err.print(f"  {escape(failure.hint)}")
        if self.as_json:
            sys.stdout.write(json.dumps(failure.to_json(), default=str) + "\n")
            sys.stdout.flush()

    @contextmanager
    def progress(self) -> Iterator[Transfers]:
        """Progress bars with rate and ETA on stderr (only when it is a terminal)."""
        enabled = not (self.as_json or self.quiet) and self.err.is_terminal
        bars = Progress(TextColumn("{task.description}"), BarColumn(), _SizeColumn(),
                        _RateColumn(), TimeRemainingColumn(), console=self.err,
                        disable=not enabled, transient=False)
        with bars:
            yield Transfers(bars)


class _SizeColumn(ProgressColumn):
    """``done/total`` in the same IEC units as the summaries."""

    def render(self, task: Task) -> Text:
        total = size(task.total) if task.total is not None else "?"
        return Text(f"{size(task.completed)}/{total}", style="progress.download")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{size(speed)}/s", style="progress.data.speed")


class Transfers:
    """The progress bars a transfer updates (implements :class:`evx.client.progress.Progress`)."""

    def __init__(self, bars: Progress) -> None:
        self._bars = bars

    def start(self, description: str, total: int, done: int = 0) -> TaskID:
        return self._bars.add_task(escape(description), total=total, completed=done)

    def advance(self, task: TaskID, amount: int) -> None:
        self._bars.advance(task, amount)

    def reset(self, task: TaskID, description: str, done: int = 0) -> None:
        self._bars.update(task, description=escape(description), completed=done)

    def finish(self, task: TaskID) -> None:
        self._bars.remove_task(task)
