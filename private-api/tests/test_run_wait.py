"""A request waiting for a run (``?wait=``) that no notification reaches (the change was made by
another process, or its message was lost) finds it by re-reading: the status alone while it has
not moved, the whole run once it has; and it answers with the run as it is then (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
from accounts import make_run, new_user

from app.auth.service import Principal
from app.config import Settings
from app.db import Database
from app.dispatch.notifier import RunNotifier
from app.runs import routes as run_routes
from app.runs import service as run_service
from app.runs.models import RunStatus

SCOPES = frozenset({"runs:read", "runs:write"})


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the waiter's whole-run reads and status-only reads; re-reads every 50 ms."""
    counts = {"load": 0, "status": 0}
    for name, key in (("_load", "load"), ("_status", "status")):
        original = getattr(run_routes, name)

        def counted(*args: Any, original: Any = original, key: str = key) -> Any:
            counts[key] += 1
            return original(*args)

        monkeypatch.setattr(run_routes, name, counted)
    monkeypatch.setattr(run_routes, "_FIRST_REREAD_S", 0.05)
    return counts


def context(db: Database) -> Any:
    return types.SimpleNamespace(db=db, notifier=RunNotifier(),
                                 settings=Settings(max_wait_s=10.0, events_poll_max_s=0.05))


def test_a_change_nobody_announced_is_found_by_cheap_rereads(db: Database, reads: dict[str, int]) -> None:
    user = new_user(db, balance=1_000)
    run_id = make_run(db, user, held=10).id
    principal = Principal(user_id=user, api_key_id="key", scopes=SCOPES)
    ctx = context(db)

    async def scenario() -> Any:
        waiting = asyncio.create_task(run_routes._wait_for_final(ctx, principal, run_id, 10.0))
        await asyncio.sleep(0.4)
        unchanged = dict(reads)
        # Another process cancels it: the database changes, nothing is published here.
        with db.session(write=True) as session:
            run_service.cancel_run(session, principal, run_id)
            session.commit()
        return unchanged, await asyncio.wait_for(waiting, 5.0)

    unchanged, answered = asyncio.run(scenario())
    assert unchanged["load"] == 1 and unchanged["status"] >= 4  # while nothing moved: the status alone
    assert answered.status == RunStatus.CANCELLED and answered.id == run_id
    assert reads["load"] == 2  # then the whole run, once


def test_a_wait_that_runs_out_answers_the_run_as_it_is_then(db: Database, reads: dict[str, int]) -> None:
    user = new_user(db, balance=1_000)
    run_id = make_run(db, user, held=10).id
    principal = Principal(user_id=user, api_key_id="key", scopes=SCOPES)

    answered = asyncio.run(run_routes._wait_for_final(context(db), principal, run_id, 0.3))
    assert answered.status == RunStatus.QUEUED and answered.id == run_id
    assert reads["status"] >= 2 and reads["load"] == 2  # read whole when the wait began and when it ended
