"""Engine and session factory; one ``Database`` per process, built from ``Settings``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy.exc
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings

# What a database that does not answer raises: refused or dropped connections, a pool that cannot
# get one, SQLite's lock held past its timeout. Requests answer 503; queued work waits for it.
DATABASE_DOWN = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)
# How long work outside a request waits for a database that does not answer, and the longest pause
# between its tries.
DATABASE_WAIT_S = 300.0
DATABASE_BACKOFF_MAX_S = 2.0

log = logging.getLogger(__name__)
T = TypeVar("T")


def retry_while_down(call: Callable[[], T], what: str, wait_s: float = DATABASE_WAIT_S) -> T:
    """``call()``, again with backoff while the database does not answer: work outside a request
    (a run's message, a run's outcome) waits for the database's return, seconds, instead of being
    dropped and found again by a timer, minutes. ``call`` must be safe to repeat."""
    deadline = time.monotonic() + wait_s
    delay = 0.1
    while True:
        try:
            return call()
        except DATABASE_DOWN as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s waits for the database (%s); again in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, DATABASE_BACKOFF_MAX_S)

WRITE_OPTION = "fmu_gateway_write"
_HOLDS_WRITE_LOCK = "fmu_gateway_holds_write_lock"
_WRITE_LOCK_WAIT_S = 30.0  # as long as SQLite's busy_timeout: past it, SQLite's own lock decides


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the worker pool write while requests read; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _SqliteWriters:
    """One SQLite writer at a time, queued in this process.

    A deferred transaction that reads and then writes cannot wait for the lock (SQLITE_BUSY at
    once): writers begin IMMEDIATE. Left to SQLite alone, writers that find the lock taken sleep in
    its busy handler (1, 2, 5, … up to 100 ms a try) and the database idles while they sleep; under
    a burst of requests that, not the work, bounds the rate. So writers of this process queue on a
    lock of its own, handed over the moment a transaction ends (the pool's check-in of its
    connection), and only other processes meet SQLite's busy handler. Readers stay deferred: in WAL
    mode they never block anyone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def begin(self, connection: Any) -> None:
        write = bool(connection.get_execution_options().get(WRITE_OPTION))
        if write and self._lock.acquire(timeout=_WRITE_LOCK_WAIT_S):
            connection.connection.info[_HOLDS_WRITE_LOCK] = True
        try:
            connection.exec_driver_sql(f"BEGIN {'IMMEDIATE' if write else 'DEFERRED'}")
        except BaseException:
            self.end(None, connection.connection)  # the pooled connection shares its record's info
            raise

    def end(self, _dbapi_connection: Any, record: Any) -> None:
        """A connection's transaction is over (committed or rolled back before its check-in)."""
        if record is not None and record.info.pop(_HOLDS_WRITE_LOCK, False):
            self._lock.release()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # isolation_level=None stops pysqlite's own implicit BEGIN, so ours is the only one.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30,
                                                  "isolation_level": None},
                               pool_size=10, max_overflow=50)
        writers = _SqliteWriters()
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", writers.begin)
        # Check-in follows the commit or rollback; invalidation and detach end it too.
        event.listen(engine, "checkin", writers.end)
        event.listen(engine, "invalidate", lambda conn, record, _exc: writers.end(conn, record))
        event.listen(engine, "detach", writers.end)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.resolved_database_url
        if self.url.startswith("sqlite:///"):
            settings.var_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session; the caller commits. ``write=True`` for transactions that change data."""
        session = self.sessionmaker()
        if write:
            session.connection(execution_options={WRITE_OPTION: True})
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
