"""Typed wiring: how an endpoint receives a part of the running service.

The app keeps its :class:`service.runtime.Runtime` on ``app.state`` (service/app.py); this is
the one module that reads it. An endpoint names what it needs by type --
``ledger: LedgerDep`` -- and each domain declares its own dependencies next to its endpoints
with :func:`provide`, so no domain imports the runtime (which imports every domain). The type is
checked on every use, so a wiring mistake is a clear TypeError, not an AttributeError deep in a
handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from service.metrics import Metrics
from service.settings import Settings

T = TypeVar("T")


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def part_of(request: Request, name: str, kind: type[T]) -> T:
    """The running service's part ``name``, checked to be a ``kind`` (for code that holds the
    request; endpoints declare it with :func:`provide`)."""
    value = getattr(_runtime(request), name)
    if not isinstance(value, kind):
        raise TypeError(f"the service's {name} is a {type(value).__name__}, "
                        f"not a {kind.__name__}")
    return value


def service_of(request: Request, kind: type[T]) -> T:
    """The running service itself, as ``kind`` (for code that holds the request; endpoints
    declare it with :func:`provide_service`)."""
    value = _runtime(request)
    if not isinstance(value, kind):
        raise TypeError(f"the service is a {type(value).__name__}, not a {kind.__name__}")
    return value  # type: ignore[no-any-return]


# The dependencies below are coroutine functions although they never wait: FastAPI runs a plain
# ``def`` dependency on a worker thread, and a thread hand-off per dependency per request cost
# more CPU than the rest of a dependency's work (docs/performance.md, metadata reads).


def provide(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency returning the running service's part ``name``, checked to be a
    ``kind`` (use it as ``Annotated[Kind, Depends(provide("name", Kind))]``)."""

    async def part(request: Request) -> T:
        return part_of(request, name, kind)

    part.__name__ = part.__qualname__ = f"get_{name}"
    return part


def provide_optional(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T | None]]:
    """As :func:`provide`, for a part the service may run without (None then)."""

    async def part(request: Request) -> T | None:
        value = getattr(_runtime(request), name)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"the service's {name} is a {type(value).__name__}, "
                            f"not a {kind.__name__}")
        return value  # type: ignore[no-any-return]

    part.__name__ = part.__qualname__ = f"get_{name}"
    return part


def provide_service(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """The running service itself, as ``kind``: the app-level Runtime, or a runtime_checkable
    Protocol naming the few members a lower module needs (see service/auth.py)."""

    # The isinstance check of a runtime_checkable Protocol walks its members (~30 us): done
    # once for the running service, again only if the app's service object is another one.
    checked: list[object] = [None]

    async def service(request: Request) -> T:
        value = _runtime(request)
        if value is not checked[0]:
            checked[0] = service_of(request, kind)
        return value  # type: ignore[no-any-return]

    service.__name__ = service.__qualname__ = f"get_{kind.__name__.lower()}"
    return service


SettingsDep = Annotated[Settings, Depends(provide("settings", Settings))]
EngineDep = Annotated[Engine, Depends(provide("engine", Engine))]
MetricsDep = Annotated[Metrics, Depends(provide("metrics", Metrics))]
