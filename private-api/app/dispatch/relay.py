"""The outbox relay and the reaper, on one background thread in every process that serves or
executes runs. Each pass is a cheap indexed query; several processes may run them at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row

from app.background import BackgroundThread
from app.config import Settings
from app.db import Database
from app.dispatch.base import SEND_BATCH, Dispatcher
from app.dispatch.leases import reap
from app.kit.models import utcnow
from app.runs import repository as run_repository
from app.runs import retention
from app.storage import Storage
from app.sweeps.service import message_spacing

log = logging.getLogger(__name__)

# A run the API committed a moment ago is being sent by its own process: leave it that long.
FRESH_S = 2.0


def relay(db: Database, dispatcher: Dispatcher, settings: Settings, *, everything: bool = False) -> int:
    """Hand over queued runs never handed over, or handed over ``dispatch_redeliver_s`` ago and
    still queued (their message lost with a worker or a Redis restart). ``everything``: all
    queued runs (the embedded pool at start-up: the previous process's queue died with it).
    Returns how many were sent."""
    sent = 0
    started = utcnow()
    while True:
        now = utcnow()
        # Never what this call stamped already.
        due = run_repository.due_for_relay(started, now, FRESH_S, None if everything else settings.dispatch_redeliver_s)
        with db.session() as session:  # the usual answer is none: no write transaction for it
            if not run_repository.any_where(session, due):
                return sent
        with db.session(write=True) as session:
            # Stamped before sending, so other relays skip them; un-stamped if the send fails.
            rows = run_repository.stamp_due(session, due, now, SEND_BATCH)
            if not rows:
                return sent
            run_ids = [row.id for row in rows]
            session.commit()
        try:
            dispatcher.send(messages_for(rows, message_spacing(settings.sweep_chunk_size)))
        except Exception:
            with db.session(write=True) as session:
                run_repository.unstamp(session, run_ids, now)
                session.commit()
            raise
        sent += len(run_ids)
        log.info("relay: handed %d queued run(s) over", len(run_ids))
        if len(run_ids) < SEND_BATCH:
            return sent


def messages_for(rows: Sequence[Row[str, str | None, datetime | None]], spacing: int) -> list[str]:
    """The runs to send a message for, of queued (id, sweep_id, enqueued_at) rows in sweep order:
    every run never handed over (a single run, or a sweep child that stands for a chunk: its
    sweep's other children were stamped at its creation), and of the children handed over before
    (their messages lost) every ``spacing``-th, as when the sweep was created: each message claims
    chunks until it ran ``spacing`` children, so a long sweep's waiting children are not sent again
    one message each."""
    seen: dict[str, int] = {}
    chosen: list[str] = []
    for row in rows:
        if row.sweep_id is None or row.enqueued_at is None:
            chosen.append(row.id)
            continue
        position = seen.get(row.sweep_id, 0)
        seen[row.sweep_id] = position + 1
        if position % spacing == 0:
            chosen.append(row.id)
    return chosen


class Housekeeper(BackgroundThread):
    """Every ``dispatch_poll_s``: reap lapsed leases, then relay what is due; every
    ``retention_interval_s``, remove the results past their tier's retention.

    Everything queued is sent again, not only what is due, when the messages of queued runs
    are known to be gone: at the embedded pool's start (its queue died with the process before
    it), after the broker lost its queue (``Dispatcher.queue_lost``), and after a vanished worker's
    runs are requeued (the messages it had fetched and not started wait in its unacked set for
    Dramatiq's heartbeat timeout, a minute or more). A duplicate message does nothing; waiting
    for ``dispatch_redeliver_s`` would leave runs queued with nothing to run them for minutes."""

    thread_name = "dispatch-housekeeper"

    def __init__(self, db: Database, dispatcher: Dispatcher, settings: Settings, storage: Storage) -> None:
        super().__init__()
        self.db = db
        self.dispatcher = dispatcher
        self.settings = settings
        self.storage = storage
        self._failing = False
        self._next_purge = time.monotonic()

    def _purge_when_due(self) -> None:
        if self.settings.retention_interval_s <= 0 or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self.settings.retention_interval_s
        try:
            retention.purge(self.db, self.storage)
        except Exception:
            log.exception("retention: purge failed; trying again in %.0f s", self.settings.retention_interval_s)

    def _loop(self) -> None:
        # The embedded pool's queue lived in the process that is gone: hand everything queued over.
        everything = self.dispatcher.executes_locally and not self.settings.broker_url
        while True:
            try:
                # Kept until a relay of everything succeeds: the broker may fail again in between.
                everything = self.dispatcher.queue_lost() or everything
                requeued, _ = reap(self.db, self.settings)
                everything = everything or (bool(requeued) and bool(self.settings.broker_url))
                relay(self.db, self.dispatcher, self.settings, everything=everything)
                everything = False
                self._purge_when_due()
                if self._failing:
                    log.info("relay: the queue is reachable again")
                self._failing = False
            except Exception as exc:
                if not self._failing:  # once per outage, not every pass
                    log.warning("dispatch housekeeping failed, retrying every %.1fs: %s",
                                self.settings.dispatch_poll_s, exc)
                self._failing = True
            if self._stop.wait(self.settings.dispatch_poll_s):
                return
