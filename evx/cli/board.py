"""A bounded transfer display for any number of files: one overall line (files, bytes, rate,
ETA, bar) and at most ``MAX_ACTIVE_ROWS`` files in flight, each on one line with its name
shortened in the middle. Its height never depends on the number of files and every line fits
the terminal's width, so it stays readable at 80x24 and costs the same per refresh whether a
folder holds ten files or 100,000.

It implements the progress interface the client's transfers report to (``start``, ``advance``,
``reset``, ``finish``) and is safe to update from several transfer threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from evx.cli.render import size

MAX_ACTIVE_ROWS = 4
REFRESH_PER_SECOND = 4
RATE_WINDOW_S = 10.0


def visible(name: str) -> str:
    """``name`` with control and other non-printable characters made visible (``\\x1b``)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in name)


def shorten(name: str, width: int) -> str:
    """``name`` cut in the middle to at most ``width`` characters (``a/b/…/file.E01``)."""
    if len(name) <= width:
        return name
    if width <= 1:
        return name[:max(0, width)]
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return name[:head] + "…" + name[len(name) - tail:]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class _Task:
    label: str
    total: int
    done: int
    counts: bool  # a transfer (its bytes count in the overall line), not a local check


class Board:
    """The display (see the module docstring). ``enabled`` False draws nothing at all."""

    def __init__(self, console: Console, *, verb: str, files: int, total_bytes: int,
                 enabled: bool) -> None:
        self.console = console
        self.verb = verb
        self.files = files
        self.total_bytes = total_bytes
        self.enabled = enabled
        self.files_done = 0
        self.bytes_done = 0
        self._tasks: dict[int, _Task] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()
        self._live: Live | None = None

    def __enter__(self) -> Board:
        if self.enabled:
            self._live = Live(self, console=self.console, refresh_per_second=REFRESH_PER_SECOND,
                              transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    # -- the progress interface of the client's transfers --------------------------------------

    def start(self, description: str, total: int, done: int = 0) -> int:
        counts = description.startswith(("uploading", "downloading"))
        with self._lock:
            task = next(self._ids)
            self._tasks[task] = _Task(description, total, done, counts)
            if counts:
                self.bytes_done += done
        return task

    def advance(self, task: Any, amount: int) -> None:
        with self._lock:
            entry = self._tasks.get(task)
            if entry is None:
                return
            entry.done += amount
            if entry.counts:
                self.bytes_done += amount

    def reset(self, task: Any, description: str, done: int = 0) -> None:
        with self._lock:
            entry = self._tasks.get(task)
            if entry is None:
                return
            if entry.counts:
                self.bytes_done += done - entry.done
            entry.label, entry.done = description, done

    def finish(self, task: Any) -> None:
        with self._lock:
            self._tasks.pop(task, None)

    def file_done(self, size_bytes: int, *, transferred: bool) -> None:
        """One file is finished; a file not transferred (already there) counts its bytes now."""
        with self._lock:
            self.files_done += 1
            if not transferred:
                self.bytes_done += size_bytes

    def note(self, text: str) -> None:
        """A line above the display (kept in the terminal's scrollback)."""
        self.console.print(Text(text), soft_wrap=True)

    # -- drawing ------------------------------------------------------------------------------

    def _rate(self, now: float) -> float | None:
        self._samples.append((now, self.bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        first_t, first_b = self._samples[0]
        if now - first_t < 0.5:
            return None
        return (self.bytes_done - first_b) / (now - first_t)

    def lines(self, width: int) -> list[str]:
        """The display as plain lines of at most ``width`` characters."""
        now = time.monotonic()
        with self._lock:
            rate = self._rate(now)
            done, total = self.bytes_done, self.total_bytes
            active = list(self._tasks.values())
            files_done = self.files_done
        eta = (total - done) / rate if rate and total > done else (0 if total <= done else None)
        head = (f"{self.verb} {files_done}/{self.files} files  {size(done)}/{size(total)}  "
                f"{size(rate) + '/s' if rate is not None else '?/s'}  ETA {_duration(eta)}")
        room = width - len(head) - 2
        if room >= 10:
            filled = int(room * (done / total if total else 1.0))
            head += "  " + "━" * filled + "╺" * (room > filled) + " " * max(0, room - filled - 1)
        lines = [head[:width]]
        for task in active[:MAX_ACTIVE_ROWS]:
            pct = f"{100 * task.done // task.total:3d}%" if task.total else "100%"
            tail = f" {pct} {size(task.done)}/{size(task.total)}"
            verb, _, name = task.label.partition(" ")
            label_room = max(8, width - len(tail) - len(verb) - 3)
            line = f"  {verb} {shorten(visible(name), label_room)}{tail}"
            lines.append(line[:width])
        if len(active) > MAX_ACTIVE_ROWS:
            lines.append(f"  … and {len(active) - MAX_ACTIVE_ROWS} more in flight"[:width])
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(options.max_width):
            yield Text(line, no_wrap=True, overflow="crop")
