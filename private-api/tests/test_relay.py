"""The relay hands queued runs over again when their message may be lost: every single run, and a
sweep's waiting children the way the sweep was first sent, one message per few children (each
claims a chunk of them). SQLite and PostgreSQL, with the machine's Redis as the queue."""

from __future__ import annotations

import json
from datetime import timedelta

import redis
from accounts import make_run, new_user
from redis_keys import REDIS_URL, temporary_redis_prefix
from sqlalchemy import insert, select, update

from app.config import Settings
from app.db import Database
from app.dispatch.redis_queue import QUEUE_NAME, RedisDispatcher
from app.dispatch.relay import relay
from app.kit.models import new_id, utcnow
from app.runs import lifecycle as run_lifecycle
from app.runs.models import Run
from app.sweeps.models import Sweep
from app.sweeps.service import message_spacing

CHILDREN = 20


def queued_sweep(db: Database, user_id: str, fmu_id: str, children: int) -> list[str]:
    """A sweep's queued children, in sweep order (no hold: the relay does not look at money)."""
    with db.session(write=True) as session:
        sweep = Sweep(user_id=user_id, fmu_id=fmu_id, status="queued", method="list", parameters={}, spec={},
                      total=children, credits_held=0)
        session.add(sweep)
        session.flush()
        ids = [new_id("run") for _ in range(children)]
        session.execute(insert(Run), [run_lifecycle.queued(id=run_id, user_id=user_id, fmu_id=fmu_id, spec={},
                                                           credits_held=0, sweep_id=sweep.id, sweep_index=index)
                                      for index, run_id in enumerate(ids)])
        session.commit()
    return ids


def test_a_sweeps_waiting_children_go_again_as_the_sweep_first_went(db: Database) -> None:
    user_id = new_user(db, 100)
    singles = [make_run(db, user_id, held=1).id for _ in range(2)]
    fmu_id = f"fmu_{user_id}"  # make_run's placeholder FMU
    children = queued_sweep(db, user_id, fmu_id, CHILDREN)
    settings = Settings()
    with db.session(write=True) as session:  # all handed over long ago, none taken since
        long_ago = utcnow() - timedelta(seconds=settings.dispatch_redeliver_s + 60)
        session.execute(update(Run).values(enqueued_at=long_ago).execution_options(synchronize_session=False))
        session.commit()

    with temporary_redis_prefix("relay") as prefix:
        namespace = f"{prefix}dramatiq"
        dispatcher = RedisDispatcher(db, REDIS_URL, namespace, execute=lambda _: None, executes_locally=False)
        try:
            assert relay(db, dispatcher, settings) == len(singles) + CHILDREN
        finally:
            dispatcher.shutdown()
        stored = redis.Redis.from_url(REDIS_URL).hvals(f"{namespace}:{QUEUE_NAME}.msgs")
    sent = sorted(json.loads(message)["args"][0] for message in stored)

    spacing = message_spacing(settings.sweep_chunk_size)
    assert spacing > 1
    assert sent == sorted(singles + children[::spacing])  # 2 + 3 messages for 22 runs
    with db.session() as session:  # every one of them stamped: not sent again at the next pass
        assert all(stamp > long_ago for stamp in session.scalars(select(Run.enqueued_at)))


def test_a_sweep_whose_creator_died_before_sending_gets_every_message_it_was_to_send(db: Database) -> None:
    """A sweep is created with its message children unstamped and the rest stamped; the API that
    made it died before its sender ran. The relay sends each unstamped child: they already are the
    sweep's one-in-``spacing``, thinning them again would leave most children without a message."""
    user_id = new_user(db, 100)
    make_run(db, user_id, held=0)  # makes the placeholder FMU
    with db.session(write=True) as session:
        session.execute(update(Run).where(Run.user_id == user_id).values(status="cancelled")
                        .execution_options(synchronize_session=False))
        session.commit()
    children = queued_sweep(db, user_id, f"fmu_{user_id}", CHILDREN * 4)
    settings = Settings()
    spacing = message_spacing(settings.sweep_chunk_size)
    fresh = settings.dispatch_redeliver_s / 2
    with db.session(write=True) as session:  # as create_sweep leaves them, a moment ago
        created = utcnow() - timedelta(seconds=fresh)
        session.execute(update(Run).where(Run.user_id == user_id).values(created_at=created, enqueued_at=created)
                        .execution_options(synchronize_session=False))
        session.execute(update(Run).where(Run.id.in_(children[::spacing])).values(enqueued_at=None)
                        .execution_options(synchronize_session=False))
        session.commit()

    with temporary_redis_prefix("relay-unsent") as prefix:
        namespace = f"{prefix}dramatiq"
        dispatcher = RedisDispatcher(db, REDIS_URL, namespace, execute=lambda _: None, executes_locally=False)
        try:
            relay(db, dispatcher, settings)
        finally:
            dispatcher.shutdown()
        stored = redis.Redis.from_url(REDIS_URL).hvals(f"{namespace}:{QUEUE_NAME}.msgs")
    assert sorted(json.loads(message)["args"][0] for message in stored) == sorted(children[::spacing])
