"""Throwaway databases for tests: a SQLite file, or a fresh database on the local PostgreSQL.

``FMU_GATEWAY_TEST_POSTGRES_URL`` points at the server (default: the machine's PostgreSQL on
127.0.0.1:5432 with trust auth). When it cannot be reached, PostgreSQL tests skip saying so, or fail
where it is required (``required.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from required import unavailable

POSTGRES_URL = os.environ.get("FMU_GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable("postgresql", f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")


@contextmanager
def temporary_database(backend: str, directory: Path) -> Iterator[str]:
    """Yield a SQLAlchemy URL of an empty database, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'fmu_gateway.db'}"
        return
    name = f"fmu_gateway_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
