"""SQLite writers of one process queue on a lock of the process (``app.db``), handed over the moment
a transaction ends, however it ends; readers never wait. A real SQLite file, real threads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database

WAIT_S = 5.0  # far below the 30 s a leaked lock would make the next writer wait


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(Settings(var_dir=tmp_path))
    with database.session(write=True) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.commit()
    yield database
    database.dispose()


def in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def write(db: Database, value: int) -> None:
    with db.session(write=True) as session:
        session.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
        session.commit()


def test_a_writer_waits_for_the_one_in_a_transaction_and_goes_when_it_commits(db: Database) -> None:
    with db.session(write=True) as first:
        first.execute(text("INSERT INTO t VALUES (1)"))
        _, second_done = in_thread(lambda: write(db, 2))
        assert not second_done.wait(0.3)  # queued behind the open write transaction
        # A reader does not queue: it sees what was committed before.
        with db.session() as reader:
            assert reader.scalar(text("SELECT count(*) FROM t")) == 0
        first.commit()
        assert second_done.wait(WAIT_S)
    with db.session() as session:
        assert sorted(session.scalars(text("SELECT x FROM t"))) == [1, 2]


def end_by_commit(session: Session) -> None:
    session.commit()


def end_by_rollback(session: Session) -> None:
    session.rollback()


def end_by_error(session: Session) -> None:
    raise RuntimeError("the transaction's code failed")


def end_by_close(session: Session) -> None:
    pass  # the with-block ends: the session closes with the transaction still open


@pytest.mark.parametrize("end", [end_by_commit, end_by_rollback, end_by_error, end_by_close],
                         ids=["commit", "rollback", "error", "close"])
def test_however_a_transaction_ends_the_next_writer_goes(db: Database, end: Callable[[Session], None]) -> None:
    expected = pytest.raises(RuntimeError) if end is end_by_error else contextlib.nullcontext()
    with expected, db.session(write=True) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        end(session)
    _, done = in_thread(lambda: write(db, 2))
    assert done.wait(WAIT_S)
    with db.session() as session:
        assert session.scalar(text("SELECT count(*) FROM t")) == (2 if end is end_by_commit else 1)


def test_a_writer_that_commits_and_goes_on_reading_has_let_the_next_one_go(db: Database) -> None:
    with db.session(write=True) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        session.commit()
        _, done = in_thread(lambda: write(db, 2))
        assert done.wait(WAIT_S)  # the commit ended the transaction, not the with-block
        assert session.scalar(text("SELECT count(*) FROM t")) == 2
