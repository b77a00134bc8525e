"""Output: readable by default (rich tables, timelines, progress on stderr), JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from evx.client.errors import ClientError


class Output:
    """Where a command writes: results to stdout, progress and notes to stderr."""

    def __init__(self, *, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """A human note (stderr); silent with --json or --quiet."""
        if not (self.as_json or self.quiet):
            self.err.print(text)

    def result(self, data: Any, human: Any = None) -> None:
        """The command's result: JSON document with --json, else the rich renderable/text."""
        if self.as_json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
            sys.stdout.flush()
        elif not self.quiet and human is not None:
            self.out.print(human)

    def error(self, exc: ClientError) -> None:
        self.err.print(f"[bold red]error:[/bold red] {escape(exc.message)}")
        if exc.hint:
            self.err.print(f"  {escape(exc.hint)}")
        if self.as_json:
            sys.stdout.write(json.dumps(exc.to_json(), default=str) + "\n")
            sys.stdout.flush()

    @contextmanager
    def progress(self) -> Iterator[Transfers]:
        """Progress bars with rate and ETA on stderr (only when it is a terminal)."""
        enabled = not (self.as_json or self.quiet) and self.err.is_terminal
        bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=self.err,
                        disable=not enabled, transient=False)
        with bars:
            yield Transfers(bars)


class Transfers:
    """A thin handle on the progress bars a transfer updates."""

    def __init__(self, bars: Progress) -> None:
        self._bars = bars

    def start(self, description: str, total: int, done: int = 0) -> TaskID:
        return self._bars.add_task(description, total=total, completed=done)

    def advance(self, task: TaskID, amount: int) -> None:
        self._bars.advance(task, amount)

    def reset(self, task: TaskID, description: str, done: int = 0) -> None:
        self._bars.update(task, description=description, completed=done)
