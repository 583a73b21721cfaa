"""One owner of the run lifecycle: every status change goes through ``app.runs.lifecycle`` (its SQL in
``app.runs.repository``),
only the changes it allows happen, and a final run is settled exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import ast
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from accounts import make_run, new_user, state
from sqlalchemy import select, update

from app.billing import pricing
from app.billing.models import LedgerEntry
from app.db import Database
from app.kit.models import utcnow
from app.runs import lifecycle as run_lifecycle
from app.runs import repository as run_repository
from app.runs.models import ACTIVE_STATUSES, FINAL_STATUSES, Run, RunStatus, check_transition

APP = Path(run_lifecycle.__file__).resolve().parents[1]
LEASE = timedelta(seconds=30)


def status_writes(path: Path) -> list[str]:
    """Places in a module that write ``runs.status``: a ``status`` keyword or dict key in a
    statement that builds a Run, inserts into or updates ``runs``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for statement in ast.walk(tree):
        if not isinstance(statement, ast.stmt) or isinstance(statement, ast.FunctionDef | ast.ClassDef):
            continue
        nodes = list(ast.walk(statement))
        touches_runs = any(
            isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id == "Run")
                or (isinstance(node.func, ast.Name) and node.func.id in ("update", "insert")
                    and any(isinstance(arg, ast.Name) and arg.id == "Run" for arg in node.args)))
            for node in nodes)
        writes_status = any(
            (isinstance(node, ast.keyword) and node.arg == "status")
            or (isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "status"
                                                   for k in node.keys))
            for node in nodes)
        if touches_runs and writes_status:
            found.append(f"{path.relative_to(APP)}:{statement.lineno}")
    return found


def test_only_the_runs_repository_writes_a_run_status_and_only_the_lifecycle_asks_it_to() -> None:
    repository = Path(run_repository.__file__).resolve()
    lifecycle = Path(run_lifecycle.__file__).resolve()
    modules = [path for path in APP.rglob("*.py") if "migrations" not in path.parts]
    assert len(modules) > 50
    assert status_writes(repository), "the check must see the repository's own writes"
    assert [place for path in modules if path != repository for place in status_writes(path)] == []
    # The repository's functions that change a status are called from the lifecycle alone.
    changes = {"claim", "claim_children", "finish_one", "lock_running", "finish_many", "release", "cancel_from",
               "requeue_lapsed", "fail_lapsed", "end_cancelled"}
    assert changes <= set(vars(run_repository))
    callers = {path.relative_to(APP).as_posix() for path in modules if path not in (repository, lifecycle)
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr in changes
               and isinstance(node.value, ast.Name) and node.value.id == "run_repository"}
    assert callers == set()
    assert "run_repository.finish_one" in lifecycle.read_text()


def test_statuses_are_one_enum_and_final_ones_lead_nowhere() -> None:
    assert set(ACTIVE_STATUSES) | set(FINAL_STATUSES) == set(RunStatus)
    assert not set(ACTIVE_STATUSES) & set(FINAL_STATUSES)
    assert set(run_lifecycle.TRANSITIONS) == set(ACTIVE_STATUSES)
    for final in FINAL_STATUSES:
        for target in RunStatus:
            with pytest.raises(run_lifecycle.IllegalTransition):
                check_transition((final,), target)
    with pytest.raises(run_lifecycle.IllegalTransition):
        check_transition((RunStatus.QUEUED,), RunStatus.SUCCEEDED)  # a run must have run to succeed


def status_of(db: Database, run_id: str) -> str:
    with db.session() as session:
        found = session.scalar(select(Run.status).where(Run.id == run_id))
        assert found is not None
        return found


def ledger_kinds(db: Database, run_id: str) -> list[str]:
    with db.session() as session:
        return sorted(session.scalars(select(LedgerEntry.kind).where(LedgerEntry.run_id == run_id)))


def ledger_count(db: Database, user_id: str, kind: str) -> int:
    with db.session() as session:
        return len(session.scalars(select(LedgerEntry.id).where(LedgerEntry.user_id == user_id,
                                                               LedgerEntry.kind == kind)).all())


def test_a_run_is_claimed_once_finished_once_and_settled_once(db: Database) -> None:
    user = new_user(db, 20)
    run = make_run(db, user, 7)
    expires = utcnow() + LEASE
    with db.session(write=True) as session:
        assert run_lifecycle.claim(session, run.id, "worker-a", expires)
        assert not run_lifecycle.claim(session, run.id, "worker-b", expires)  # the loser learns it
        session.commit()
    outcome = {"status": RunStatus.SUCCEEDED, "cpu_time_s": 0.5, "wall_time_s": 0.6}
    with db.session(write=True) as session:  # not the lease holder: nothing is recorded
        assert run_lifecycle.finish(session, {run.id: outcome}, "worker-b") == []
        session.commit()
    assert status_of(db, run.id) == RunStatus.RUNNING
    for expected in (1, 0):  # a retried finish records and settles nothing more
        with db.session(write=True) as session:
            assert len(run_lifecycle.finish(session, {run.id: outcome}, "worker-a")) == expected
            session.commit()
    assert status_of(db, run.id) == RunStatus.SUCCEEDED
    assert ledger_kinds(db, run.id) == ["hold", "release", "settle"]
    balance, _, total = state(db, user)
    with db.session() as session:
        charged = session.get(Run, run.id)
        assert charged is not None and 0 < charged.credits_charged < 7
    assert balance == total == 20 - charged.credits_charged


def test_a_cancelled_run_is_never_finished_by_its_worker(db: Database) -> None:
    user = new_user(db, 20)
    run = make_run(db, user, 7)
    with db.session(write=True) as session:
        assert run_lifecycle.claim(session, run.id, "worker-a", utcnow() + LEASE)
        session.commit()
    with db.session(write=True) as session:
        loaded = session.get(Run, run.id)
        assert loaded is not None and run_lifecycle.cancel(session, loaded)
        assert not run_lifecycle.cancel(session, loaded)  # final: a second cancel moves nothing
        session.commit()
    with db.session(write=True) as session:
        finished = run_lifecycle.finish(session, {run.id: {"status": RunStatus.FAILED, "error_code": "model_error"}},
                                        "worker-a")
        session.commit()
    assert finished == []
    assert status_of(db, run.id) == RunStatus.CANCELLED
    assert ledger_kinds(db, run.id) == ["hold"]  # what it used is settled by settle_cancelled
    assert state(db, user)[0] == state(db, user)[2]


def test_a_cancel_that_read_a_run_before_its_claim_stops_it_as_running(db: Database) -> None:
    """On PostgreSQL a worker can claim a run between the cancel's read and its UPDATE: the cancel
    must see that it stops a running run (kill its sandbox, charge its time), not a queued one."""
    user = new_user(db, 20)
    run = make_run(db, user, 7)  # as the cancel read it: queued
    with db.session(write=True) as session:
        assert run_lifecycle.claim(session, run.id, "worker-a", utcnow() + LEASE)
        session.execute(update(Run).where(Run.id == run.id).values(started_at=utcnow() - timedelta(seconds=30)))
        session.commit()
    with db.session(write=True) as session:
        read_before = session.merge(run, load=False)
        assert read_before.status == RunStatus.QUEUED
        assert run_lifecycle.cancel(session, read_before) == RunStatus.RUNNING
        session.commit()
    with db.session() as session:
        cancelled = session.get(Run, run.id)
        assert cancelled is not None and cancelled.status == RunStatus.CANCELLED
        assert cancelled.error_message == "cancelled while running"
        assert cancelled.credits_charged == 0 and cancelled.lease_expires_at is not None  # its worker settles it
    assert ledger_kinds(db, run.id) == ["hold"]


class TestACancelledRunningRunIsChargedLikeAFinishedOne:
    """One rule: a run costs the CPU time its sandbox used, whether it finished or was cancelled."""

    def cancelled_while_running(self, db: Database, user: str) -> Run:
        run = make_run(db, user, 50)
        with db.session(write=True) as session:
            assert run_lifecycle.claim(session, run.id, "worker-a", utcnow() + LEASE)
            # 30 s of wall time: what a cancel used to charge, whatever the sandbox did with them.
            session.execute(update(Run).where(Run.id == run.id).values(started_at=utcnow() - timedelta(seconds=30)))
            session.commit()
        with db.session(write=True) as session:
            loaded = session.get(Run, run.id)
            assert loaded is not None and run_lifecycle.cancel(session, loaded) == RunStatus.RUNNING
            session.commit()
        return run

    def test_its_worker_charges_the_cpu_time_it_used_once(self, db: Database) -> None:
        user = new_user(db, 100)
        run = self.cancelled_while_running(db, user)
        used = {run.id: {"cpu_time_s": 2.5, "wall_time_s": 30.0, "max_rss_bytes": 1 << 20}}
        for settled in (1, 0):
            with db.session(write=True) as session:
                assert len(run_lifecycle.settle_cancelled(session, used, "worker-a")) == settled
                session.commit()
        with db.session() as session:
            stored = session.get(Run, run.id)
            assert stored is not None
            assert stored.credits_charged == pricing.run_cost(2.5, 50) < pricing.run_cost(30.0, 50)
            assert (stored.cpu_time_s, stored.lease_expires_at) == (2.5, None)
        assert ledger_kinds(db, run.id).count("settle") == 1
        balance, _, total = state(db, user)
        assert balance == total == 100 - pricing.run_cost(2.5, 50)

    def test_another_worker_cannot_settle_it(self, db: Database) -> None:
        run = self.cancelled_while_running(db, new_user(db, 100))
        with db.session(write=True) as session:
            assert run_lifecycle.settle_cancelled(session, {run.id: {"cpu_time_s": 1.0}}, "worker-b") == []

    def test_it_is_refunded_when_its_worker_is_gone(self, db: Database) -> None:
        user = new_user(db, 100)
        run = self.cancelled_while_running(db, user)
        with db.session(write=True) as session:
            _, failed = run_lifecycle.requeue_or_fail_lapsed(session, max_attempts=2, limit=10)
            assert failed == []  # its lease has not lapsed: the worker may still settle it
            session.execute(update(Run).where(Run.id == run.id).values(lease_expires_at=utcnow() - LEASE))
            _, failed = run_lifecycle.requeue_or_fail_lapsed(session, max_attempts=2, limit=10)
            session.commit()
        assert failed == [run.id]
        assert status_of(db, run.id) == RunStatus.CANCELLED
        assert ledger_kinds(db, run.id) == ["hold", "refund", "settle"]
        assert state(db, user) == (100, 0, 100)


def test_a_platform_failure_is_refunded_and_a_shutdown_gives_the_run_back(db: Database) -> None:
    user = new_user(db, 20)
    failed, released = make_run(db, user, 7), make_run(db, user, 5)
    with db.session(write=True) as session:
        for run in (failed, released):
            assert run_lifecycle.claim(session, run.id, "worker-a", utcnow() + LEASE)
        session.commit()
    with db.session(write=True) as session:
        run_lifecycle.finish(session, {failed.id: {"status": RunStatus.FAILED, "error_code": "sandbox_error",
                                                   "cpu_time_s": 9.0}}, "worker-a")
        run_lifecycle.release(session, released.id, "worker-a")
        session.commit()
    assert ledger_kinds(db, failed.id) == ["hold", "refund", "settle"]
    assert status_of(db, released.id) == RunStatus.QUEUED
    with db.session() as session:
        back = session.get(Run, released.id)
        assert back is not None and back.attempts == 0 and back.lease_owner is None  # the attempt does not count
    assert state(db, user) == (15, 0, 15)  # 7 refunded; 5 still held by the queued run


def test_a_lapsed_lease_requeues_then_fails_and_refunds(db: Database) -> None:
    user = new_user(db, 20)
    run = make_run(db, user, 7)
    for attempt in (1, 2):
        with db.session(write=True) as session:
            assert run_lifecycle.claim(session, run.id, f"worker-{attempt}", utcnow() + LEASE)
            session.execute(update(Run).where(Run.id == run.id).values(lease_expires_at=utcnow() - LEASE))
            requeued, failed = run_lifecycle.requeue_or_fail_lapsed(session, max_attempts=2, limit=10)
            session.commit()
        assert (requeued, failed) == (([run.id], []) if attempt == 1 else ([], [run.id]))
    assert status_of(db, run.id) == RunStatus.FAILED
    assert ledger_kinds(db, run.id) == ["hold", "refund", "settle"]
    assert state(db, user) == (20, 0, 20)


def test_a_chunk_is_finished_in_one_go_skipping_the_runs_no_longer_ours(db: Database) -> None:
    user = new_user(db, 100)
    runs = [make_run(db, user, 7) for _ in range(4)]
    with db.session(write=True) as session:
        for run in runs:
            assert run_lifecycle.claim(session, run.id, "worker-a", utcnow() + LEASE)
        # As a chunk's children are claimed: started only when the runner says so.
        session.execute(update(Run).where(Run.id == runs[0].id).values(started_at=None))
        session.commit()
    with db.session(write=True) as session:  # one is cancelled while the chunk runs
        cancelled = session.get(Run, runs[3].id)
        assert cancelled is not None and run_lifecycle.cancel(session, cancelled)
        session.commit()
    started = utcnow() - timedelta(seconds=5)
    outcomes: dict[str, dict[str, object]] = {
        runs[0].id: {"status": RunStatus.SUCCEEDED, "cpu_time_s": 0.2, "wall_time_s": 0.3, "started_at": started,
                     "result_rows": 11, "result_columns": ["time", "x"], "result_bytes": 900},
        runs[1].id: {"status": RunStatus.FAILED, "error_code": "model_error", "error_message": "diverged",
                     "cpu_time_s": 0.1, "wall_time_s": 0.1},
        runs[2].id: {"status": RunStatus.FAILED, "error_code": "runner_error", "error_message": "lost"},
        runs[3].id: {"status": RunStatus.SUCCEEDED, "cpu_time_s": 0.1},
    }
    for expected in (3, 0):
        with db.session(write=True) as session:
            finished = run_lifecycle.finish(session, outcomes, "worker-a")
            run_lifecycle.settle_cancelled(session, {runs[3].id: {"cpu_time_s": 0.1}}, "worker-a")
            session.commit()
        assert len(finished) == expected
    with db.session() as session:
        stored = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_([r.id for r in runs])))}
    first = stored[runs[0].id]
    assert (first.status, first.result_rows, first.result_columns, first.result_bytes) == \
        (RunStatus.SUCCEEDED, 11, ["time", "x"], 900)
    assert first.started_at is not None and abs((first.started_at - started).total_seconds()) < 1
    assert first.finished_at is not None and first.lease_expires_at is None
    assert (stored[runs[1].id].status, stored[runs[1].id].error_message) == (RunStatus.FAILED, "diverged")
    assert stored[runs[3].id].status == RunStatus.CANCELLED
    assert ledger_kinds(db, runs[2].id) == ["hold", "refund", "settle"]  # the platform's failure
    for run in runs:
        assert ledger_kinds(db, run.id).count("settle") == 1
    balance, _, total = state(db, user)
    assert balance == total == 100 - sum(run.credits_charged for run in stored.values())


def test_two_users_running_each_others_shared_models_settle_at_once_without_deadlock(db: Database) -> None:
    """Each settlement changes two balances, the grantee's and the owner's, in opposite orders for
    the two: their rows are locked in one order first, so on PostgreSQL neither transaction waits
    for the other's second lock (a deadlock aborts one). Both ledgers still sum to their balances."""
    alice, bob = new_user(db, 1000), new_user(db, 1000)
    errors: list[BaseException] = []
    outcome = {"status": RunStatus.SUCCEEDED, "cpu_time_s": 0.1, "wall_time_s": 0.1}
    for _ in range(15):
        runs = [make_run(db, alice, 5, fmu_owner=bob, owner_credits=2),
                make_run(db, bob, 5, fmu_owner=alice, owner_credits=2)]
        with db.session(write=True) as session:
            for run in runs:
                assert run_lifecycle.claim(session, run.id, "worker-a", utcnow() + LEASE)
            session.commit()
        barrier = threading.Barrier(2)

        def settle(run: Run, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                with db.session(write=True) as session:
                    assert len(run_lifecycle.finish(session, {run.id: outcome}, "worker-a")) == 1
                    session.commit()
            except BaseException as exc:  # collected: an assertion in a thread would be lost
                errors.append(exc)

        threads = [threading.Thread(target=settle, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    for user in (alice, bob):
        balance, _, total = state(db, user)
        assert balance == total and ledger_count(db, user, "earning") == 15
