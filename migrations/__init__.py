"""Alembic migrations of evidence-exchange; run them with :func:`service.db.upgrade`."""
