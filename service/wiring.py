"""Typed wiring: how an endpoint receives a part of the running service.

The app keeps its :class:`service.runtime.Runtime` on ``app.state`` (service/app.py); this is
the one module that reads it. An endpoint names what it needs by type --
``ledger: LedgerDep`` -- and each domain declares its own dependencies next to its endpoints
with :func:`provide`, so no domain imports the runtime (which imports every domain). The type is
checked on every use, so a wiring mistake is a clear TypeError, not an AttributeError deep in a
handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from service.metrics import Metrics
from service.settings import Settings

T = TypeVar("T")


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def provide(name: str, kind: type[T]) -> Callable[[Request], T]:
    """A FastAPI dependency returning the running service's part ``name``, checked to be a
    ``kind`` (use it as ``Annotated[Kind, Depends(provide("name", Kind))]``)."""

    def part(request: Request) -> T:
        value = getattr(_runtime(request), name)
        if not isinstance(value, kind):
            raise TypeError(f"the service's {name} is a {type(value).__name__}, "
                            f"not a {kind.__name__}")
        return value

    part.__name__ = part.__qualname__ = f"get_{name}"
    return part


def provide_optional(name: str, kind: type[T]) -> Callable[[Request], T | None]:
    """As :func:`provide`, for a part the service may run without (None then)."""

    def part(request: Request) -> T | None:
        value = getattr(_runtime(request), name)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"the service's {name} is a {type(value).__name__}, "
                            f"not a {kind.__name__}")
        return value

    part.__name__ = part.__qualname__ = f"get_{name}"
    return part


def provide_service(kind: type[T]) -> Callable[[Request], T]:
    """The running service itself, as ``kind``: the app-level Runtime, or a runtime_checkable
    Protocol naming the few members a lower module needs (see service/auth.py)."""

    def service(request: Request) -> T:
        value = _runtime(request)
        if not isinstance(value, kind):
            raise TypeError(f"the service is a {type(value).__name__}, not a {kind.__name__}")
        return value

    service.__name__ = service.__qualname__ = f"get_{kind.__name__.lower()}"
    return service


SettingsDep = Annotated[Settings, Depends(provide("settings", Settings))]
EngineDep = Annotated[Engine, Depends(provide("engine", Engine))]
MetricsDep = Annotated[Metrics, Depends(provide("metrics", Metrics))]
