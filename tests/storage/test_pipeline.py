"""read_ahead: order, exceptions and early close."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from storage.pipeline import read_ahead


class Boom(Exception):
    pass


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_order_is_kept(depth: int) -> None:
    assert list(read_ahead((bytes([i]) for i in range(50)), depth)) == [
        bytes([i]) for i in range(50)
    ]


def test_exceptions_arrive_after_the_pieces_before_them() -> None:
    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise Boom

    received = []
    with pytest.raises(Boom):
        for piece in read_ahead(source(), 2):
            received.append(piece)
    assert received == [b"a", b"b"]


def test_closing_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x"
        finally:
            closed.set()

    stream = read_ahead(endless(), 2)
    assert next(stream) == b"x"
    stream.close()  # type: ignore[attr-defined]
    assert closed.wait(5)


def test_negative_depth() -> None:
    with pytest.raises(ValueError):
        read_ahead(iter(()), -1)
