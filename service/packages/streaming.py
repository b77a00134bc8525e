"""Moving evidence bytes between the event loop and the worker threads that encrypt/decrypt.

Bytes are handed across in blocks of ``BLOCK_BYTES`` so the per-hand-off cost (a thread switch)
is paid a few hundred times per GiB, not once per network read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from service.metrics import Metrics
from storage.errors import IntegrityError as StorageIntegrityError

BLOCK_BYTES = 1024 * 1024
T = TypeVar("T")


PREFETCH_BLOCKS = 4  # request body read ahead of encryption: 4 MiB per upload at most
# Transfers run on their own worker threads (``limiter``: the transfer slots' pool,
# service/limits.py): however many are in flight, the threads that ordinary requests use
# (anyio's default limiter) stay free (review H4).


async def with_body(stream: AsyncIterator[bytes], consume: Callable[[Iterator[bytes]], T],
                    limiter: anyio.CapacityLimiter) -> T:
    """Run ``consume`` on a worker thread of ``limiter`` over the request body in ~1 MiB blocks.

    A task on the event loop keeps reading the body up to ``PREFETCH_BLOCKS`` ahead, so the
    network and the encryption overlap. A body that breaks off raises its error from the
    iterator -- it never looks like a shorter, complete body. ``consume``'s exception is raised
    as it is (not wrapped in an exception group).
    """
    send, receive = anyio.create_memory_object_stream[bytes](PREFETCH_BLOCKS)
    token = anyio.lowlevel.current_token()
    failure: list[BaseException] = []

    async def pump() -> None:
        async with send:
            buffer = bytearray()
            try:
                async for piece in stream:
                    buffer += piece
                    if len(buffer) >= BLOCK_BYTES:
                        await send.send(bytes(buffer))
                        buffer.clear()
                if buffer:
                    await send.send(bytes(buffer))
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                failure.append(exc)

    def blocks() -> Iterator[bytes]:
        while True:
            try:
                block = anyio.from_thread.run(receive.receive, token=token)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if failure:
                    raise failure[0] from None
                return
            yield block

    outcome: list[T] = []
    error: list[BaseException] = []
    async with anyio.create_task_group() as group:
        group.start_soon(pump)
        try:
            outcome.append(await anyio.to_thread.run_sync(consume, blocks(),
                                                          limiter=limiter))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the group
            error.append(exc)
        finally:
            group.cancel_scope.cancel()  # the consumer stopped early: stop reading
            receive.close()
    if error:
        raise error[0]
    return outcome[0]


def _next_block(chunks: Iterator[bytes], before: Callable[[], None] | None = None) -> bytes:
    if before is not None:
        before()
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        if len(buffer) >= BLOCK_BYTES:
            break
    return bytes(buffer)


async def blocks_from_thread(chunks: Iterator[bytes],
                             before_each: Callable[[], None] | None,
                             limiter: anyio.CapacityLimiter) -> AsyncIterator[bytes]:
    """Iterate a blocking (decrypting) iterator from the event loop, ~1 MiB at a time.

    ``before_each`` runs on the worker thread before each block (e.g. "is the share still
    active?"); what it raises ends the iteration. No thread is held while the network waits.
    """
    while True:
        block = await anyio.to_thread.run_sync(_next_block, chunks, before_each,
                                               limiter=limiter)
        if not block:
            return
        yield block


async def served(blocks: AsyncIterator[bytes], metrics: Metrics, *,
                 release: Callable[[], None],
                 finish: Callable[[int, BaseException | None], None]) -> AsyncIterator[bytes]:
    """A response body of evidence ``blocks``, counted; afterwards, however it ended, the
    transfer slot is released and ``finish(bytes sent, error)`` runs on a worker thread (it
    records the completion or the abort). A client that went away is no error: ``finish``
    gets ``None`` with fewer bytes than expected."""
    sent = 0
    error: BaseException | None = None
    try:
        async for block in blocks:
            yield block
            sent += len(block)
            metrics.bytes_out.inc(len(block))
    except (anyio.get_cancelled_exc_class(), GeneratorExit):
        raise
    except BaseException as exc:
        error = exc
        if isinstance(exc, StorageIntegrityError):
            metrics.integrity_failures.inc()
        raise
    finally:
        release()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: finish(sent, error))
