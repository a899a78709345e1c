"""Alembic migrations: every schema change ships as a revision, so an upgrade never needs a fresh database."""
