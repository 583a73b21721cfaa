"""The ledger and the idempotency store against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from accounts import make_run, new_user, state
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.auth.models import User
from app.billing import credits
from app.billing.models import IdempotencyRecord
from app.db import Database
from app.idempotency.middleware import claim_key, store_response
from app.idempotency.store import IdempotencyStore
from app.kit.models import utcnow
from app.runs.models import Run


def test_signup_credits_are_a_ledger_entry(db: Database) -> None:
    user = new_user(db, 25)
    assert state(db, user) == (25, 0, 25)


def test_an_effect_with_a_used_key_changes_nothing(db: Database) -> None:
    user = new_user(db)
    for _ in range(3):
        with db.session(write=True) as session:
            credits.credit(session, user, "purchase", 100, "purchase:cs_1")
            session.commit()
    assert state(db, user) == (100, 0, 100)


def test_concurrent_effects_with_one_key_apply_once(db: Database) -> None:
    user = new_user(db)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def grant() -> None:
        try:
            barrier.wait()
            with db.session(write=True) as session:
                credits.credit(session, user, "grant", 10, "grant:once")
                session.commit()
        except BaseException as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=grant) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert state(db, user) == (10, 0, 10)


def test_a_debit_never_takes_the_balance_below_zero(db: Database) -> None:
    user = new_user(db, 5)
    with db.session(write=True) as session, pytest.raises(credits.InsufficientCredits):
        credits.post(session, user, "adjust", -6, "adjust:too-much")
    with db.session(write=True) as session:
        # Even a direct write is refused by the CHECK constraint.
        with pytest.raises(IntegrityError):
            session.execute(update(User).where(User.id == user).values(credits=-1))
        session.rollback()
    assert state(db, user) == (5, 0, 5)


def test_ledger_entries_cannot_be_changed_or_deleted(db: Database) -> None:
    user = new_user(db, 5)
    for statement in ("UPDATE ledger_entries SET amount = 1000", "DELETE FROM ledger_entries"):
        with db.session(write=True) as session:
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(text(statement))
            session.rollback()
    assert state(db, user) == (5, 0, 5)


def test_hold_settle_release(db: Database) -> None:
    user = new_user(db, 20)
    run = make_run(db, user, 7)
    assert state(db, user) == (13, 0, 13)
    for _ in range(2):  # settling twice (a retried finish) changes nothing the second time
        with db.session(write=True) as session:
            credits.settle_run(session, session.get(Run, run.id) or run, 3)
            session.commit()
    assert state(db, user) == (17, 0, 17)
    with db.session(write=True) as session:  # nor can a refund come after the settlement
        credits.refund_run(session, session.get(Run, run.id) or run, "sandbox_error")
        session.commit()
    assert state(db, user) == (17, 0, 17)


def test_a_platform_failure_is_refunded_in_full_once(db: Database) -> None:
    user = new_user(db, 20)
    run = make_run(db, user, 7)
    for _ in range(2):
        with db.session(write=True) as session:
            credits.refund_run(session, session.get(Run, run.id) or run, "sandbox_error")
            session.commit()
    assert state(db, user) == (20, 0, 20)
    with db.session() as session:
        assert (session.get(Run, run.id) or run).credits_charged == 0


def test_claw_back_takes_what_is_left_and_records_the_rest_as_debt(db: Database) -> None:
    user = new_user(db)
    with db.session(write=True) as session:
        credits.credit(session, user, "purchase", 100, "purchase:cs_2")
        credits.post(session, user, "adjust", -70, "spent")
        assert credits.claw_back(session, user, 100, "clawback:ch_1") == (30, 70)
        assert credits.claw_back(session, user, 100, "clawback:ch_1") == (0, 0)  # replayed
        session.commit()
    assert state(db, user) == (0, 70, 0)
    with db.session(write=True) as session:  # the next purchase repays the debt first
        credits.credit(session, user, "purchase", 100, "purchase:cs_3")
        session.commit()
    assert state(db, user) == (30, 0, 30)


def test_idempotency_store_claims_replays_and_expires(db: Database) -> None:
    user = new_user(db)
    store = IdempotencyStore(db, "secret")
    first = claim_key(store, user, "k", "hash-a")
    assert first.state == "run" and first.record_id is not None
    assert claim_key(store, user, "k", "hash-a").state == "in_use"
    assert claim_key(store, user, "k", "hash-b").state == "mismatch"
    store_response(store, first.record_id, 201, {"content-type": "application/json"}, b'{"secret": "s3cr3t"}')
    replay = claim_key(store, user, "k", "hash-a")
    assert (replay.state, replay.status_code, replay.body) == ("replay", 201, b'{"secret": "s3cr3t"}')
    with db.session() as session:  # stored encrypted: a database dump does not leak a new key's secret
        record = session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "k"))
        assert record is not None and b"s3cr3t" not in (record.response_body or b"")
    with db.session(write=True) as session:  # 24 h later the key is free again
        session.execute(update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert claim_key(store, user, "k", "hash-b").state == "run"


def test_a_lock_left_by_a_dead_request_is_taken_over(db: Database) -> None:
    user = new_user(db)
    store = IdempotencyStore(db, "secret")
    assert claim_key(store, user, "k", "h", lock_s=0.2).state == "run"
    assert claim_key(store, user, "k", "h").state == "in_use"
    threading.Event().wait(0.3)
    assert claim_key(store, user, "k", "h").state == "run"


def test_concurrent_claims_let_exactly_one_run(db: Database) -> None:
    user = new_user(db)
    store = IdempotencyStore(db, "secret")
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def claim() -> None:
        barrier.wait()
        outcomes.append(claim_key(store, user, "k", "h").state)

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["in_use"] * 9 + ["run"]
