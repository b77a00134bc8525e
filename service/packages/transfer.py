"""Moving evidence bytes between the event loop and the worker threads that encrypt/decrypt.

Bytes are handed across in blocks of ``BLOCK_BYTES`` so the per-hand-off cost (a thread switch)
is paid a few hundred times per GiB, not once per network read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

BLOCK_BYTES = 1024 * 1024


def body_blocks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """A blocking iterator over an ASGI request body in ~1 MiB blocks.

    Call it on the event loop; iterate it on any thread (the vault reads on its own thread).
    """
    token = anyio.lowlevel.current_token()
    return _blocks(stream, token)


def _blocks(stream: AsyncIterator[bytes], token: anyio.lowlevel.EventLoopToken
            ) -> Iterator[bytes]:
    async def next_block() -> bytes:
        buffer = bytearray()
        while len(buffer) < BLOCK_BYTES:
            try:
                buffer += await stream.__anext__()
            except StopAsyncIteration:
                break
        return bytes(buffer)

    while True:
        block = anyio.from_thread.run(next_block, token=token)
        if not block:
            return
        yield block


def _next_block(chunks: Iterator[bytes]) -> bytes:
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        if len(buffer) >= BLOCK_BYTES:
            break
    return bytes(buffer)


async def blocks_from_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Iterate a blocking (decrypting) iterator from the event loop, ~1 MiB at a time."""
    while True:
        block = await anyio.to_thread.run_sync(_next_block, chunks)
        if not block:
            return
        yield block
