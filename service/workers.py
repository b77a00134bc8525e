"""The app of one worker process of `evx serve --workers N` (uvicorn imports it by name).

The parent has already prepared what must happen once -- the data folder, the migrations, the
generated keys -- and told the workers not to migrate (``EVX_AUTO_MIGRATE=false``), so N
workers never race to create keys or run a migration. Each worker is a replica of its own with
its own runtime: the shared ledger is safe with several writers on PostgreSQL (its head is
moved under a guard and a lock, as with several replicas), which is why more than one worker
needs PostgreSQL.
"""

from __future__ import annotations

import os
import socket

import structlog
from fastapi import FastAPI

from service.app import create_app
from service.logs import configure_logging
from service.settings import load_settings


def worker_app() -> FastAPI:
    """A fully built app for this worker process, configured from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_format == "json")
    replica = settings.replica_id or socket.gethostname()
    structlog.contextvars.bind_contextvars(replica=f"{replica}/{os.getpid()}")
    return create_app(settings)
