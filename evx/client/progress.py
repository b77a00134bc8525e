"""What a transfer reports its progress to. The library only calls this interface; the command
line draws it (:mod:`evx.cli.render`), a script may pass :data:`NO_PROGRESS`."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """Progress of transfers: ``start`` a task of ``total`` bytes, ``advance`` it, ``reset``
    it (a transfer that starts over), ``finish`` it (done or given up)."""

    def start(self, description: str, total: int, done: int = 0) -> Any: ...

    def advance(self, task: Any, amount: int) -> None: ...

    def reset(self, task: Any, description: str, done: int = 0) -> None: ...

    def finish(self, task: Any) -> None: ...


class _NoProgress:
    def start(self, description: str, total: int, done: int = 0) -> Any:
        return None

    def advance(self, task: Any, amount: int) -> None:
        return None

    def reset(self, task: Any, description: str, done: int = 0) -> None:
        return None

    def finish(self, task: Any) -> None:
        return None


NO_PROGRESS: Progress = _NoProgress()
