"""Rendering, in one place: results to stdout (rich by default, one JSON document with
``--json``), notes, errors and progress to stderr; sizes in one unit system (IEC: KiB, MiB,
GiB) in bars and summaries alike; tables whose ids are never wrapped."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


class Output:
    """Where a command writes: results to stdout, progress, notes and errors to stderr."""

    def __init__(self, *, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

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
