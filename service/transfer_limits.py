"""No caller can starve the others: transfers reserve a slot and their buffer bytes before the
first byte, run on their own worker threads, and are cut when they stall.

* per officer and per authority at most N transfers at once (429 + ``Retry-After``);
* a replica-wide budget of bytes buffered by transfers; beyond it a new transfer waits up to
  ``EVX_TRANSFER_QUEUE_SECONDS``, then gets 503 + ``Retry-After`` -- memory never grows without
  bound (docs/operations.md states the ceiling);
* a body (up or down) that moves fewer than ``EVX_TRANSFER_MIN_BYTES_PER_SECOND`` over a window
  of ``EVX_TRANSFER_STALL_SECONDS`` is cut;
* transfer threads have their own limiter, so the threads ordinary requests use stay free, and
  ``/healthz``, ``/readyz``, ``/metrics`` need none of them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Message, Send

from service.identity.caller import Caller
from service.limits import TransferRefused, TransferSlots, TransferStalled
from service.problems import SERVICE_BUSY, TOO_MANY_REQUESTS, Problem

MIB = 1024 * 1024
_POLL_S = 0.05
# Worst-case bytes one transfer buffers (what it reserves from the budget): an upload holds the
# body read ahead (4 blocks of 1 MiB), the block being encrypted and the store's read-ahead
# (4 pieces); a download the store's read-ahead (4 pieces), the block being decrypted and the
# one being sent. Measured per unread download before these limits: ~12.6 MB (review M5).
UPLOAD_BUFFER_BYTES = 12 * MIB
DOWNLOAD_BUFFER_BYTES = 12 * MIB


@asynccontextmanager
async def transfer_slot(slots: TransferSlots, caller: Caller, cost: int,
                        queue_seconds: float) -> AsyncIterator[None]:
    """Hold a transfer slot for the block; raise a 429/503 :class:`Problem` if none comes."""
    await acquire(slots, caller, cost, queue_seconds)
    try:
        yield
    finally:
        slots.release(caller, cost)


async def acquire(slots: TransferSlots, caller: Caller, cost: int,
                  queue_seconds: float) -> None:
    deadline = time.monotonic() + queue_seconds
    while True:
        try:
            slots.try_acquire(caller, cost)
            return
        except TransferRefused as refused:
            if refused.busy and time.monotonic() < deadline:
                await anyio.sleep(_POLL_S)  # the budget frees as transfers end: wait a little
                continue
            raise Problem(SERVICE_BUSY if refused.busy else TOO_MANY_REQUESTS,
                          f"{refused}; retry in {refused.retry_after} s.",
                          headers={"Retry-After": str(refused.retry_after)}) from None


class PacedStream:
    """Wrap a body iterator: cut it (``TransferStalled``) when fewer than ``min_rate`` bytes per
    second arrive over any window of ``window`` seconds."""

    def __init__(self, source: AsyncIterator[bytes], *, min_rate: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._need = max(1, int(min_rate * window))
        self._window = window
        self._clock = clock
        self._started = clock()
        self._seen = 0

    def __aiter__(self) -> PacedStream:
        return self

    async def __anext__(self) -> bytes:
        left = self._window - (self._clock() - self._started)
        try:
            with anyio.fail_after(max(left, 0.001)):
                piece = await self._source.__anext__()
        except TimeoutError:
            raise TransferStalled(f"fewer than {self._need} bytes in {self._window:.0f} s") \
                from None
        self._seen += len(piece)
        if self._seen >= self._need:  # the window is satisfied: a new one starts
            self._seen, self._started = 0, self._clock()
        return piece


class PacedStreamingResponse(StreamingResponse):
    """A streaming response cut when the client reads fewer than the minimum rate."""

    def __init__(self, *args: Any, min_rate: int, window: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._need = max(1, int(min_rate * window))
        self._window = window

    async def stream_response(self, send: Send) -> None:
        started, seen = time.monotonic(), 0

        async def paced_send(message: Message) -> None:
            nonlocal started, seen
            left = self._window - (time.monotonic() - started)
            try:
                with anyio.fail_after(max(left, 0.001)):
                    await send(message)
            except TimeoutError:
                raise TransferStalled(f"the client read fewer than {self._need} bytes in "
                                      f"{self._window:.0f} s") from None
            seen += len(message.get("body", b""))
            if seen >= self._need:
                seen, started = 0, time.monotonic()

        await super().stream_response(paced_send)
