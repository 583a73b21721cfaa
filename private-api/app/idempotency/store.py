"""Stored first responses of POSTs sent with an ``Idempotency-Key`` (the store behind
``app.idempotency.IdempotencyMiddleware``).

A key belongs to one user and one request (method, path, body and the sending API key, by hash). The first
request takes a short lock that it renews while it runs; a concurrent duplicate meets the lock
(409), a later retry gets the stored response, the same key with another request gets 422. A
request that died without an answer stops holding its lock within ``LOCK_S``; a retry then runs
it again, which routes make safe (a run's own Idempotency-Key column finds the run it created).
Responses are kept encrypted for 24 h: one of them carries a new API key's secret.

Run and sweep submissions keep their key on their own row (``app.idempotency.owns_idempotency_key``);
a user's keys are still one namespace: a key a run or a sweep holds is refused here and to the
other, and a key held here is refused to both (``key_held``).

This module is the idempotency_records table's home: every query of it is here. It commits
nothing: the middleware owns the store's transactions (``app.idempotency.middleware``: one short
transaction per claim, renewal, completion, release or purge, committed before the route runs or
after it answered); here the decisions are made and flushed. ``created_under`` and ``key_held`` run
in the submitting route's transaction.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel
from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from app.billing.models import IdempotencyRecord
from app.db import Database
from app.errors import IdempotencyKeyReused
from app.kit.models import utcnow
from app.runs.models import Run
from app.sweeps.models import Sweep

TTL = timedelta(hours=24)
Owner = TypeVar("Owner", Run, Sweep)  # what keeps its own key: runs and sweeps
LOCK_S = 10.0  # renewed every LOCK_S / 3 while the first request runs
_PURGE_EVERY_S = 600.0


@dataclass
class Claim:
    state: Literal["run", "replay", "in_use", "mismatch"]
    record_id: int | None = None
    status_code: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    retry_after_s: int = 0


def request_hash(method: str, path: str, body_digest: str, subject: str) -> str:
    """What a key is bound to: the request and the credential (API key) that sent it. Query options
    (``?wait=``) only shape the answer, so they are left out."""
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body_digest.encode(),
                                       subject.encode()])).hexdigest()


def submission_hash(fmu_id: str, request: BaseModel, api_key_id: str) -> str:
    """What a run's or a sweep's own Idempotency-Key is bound to (``created_under``): the FMU, the
    request and the credential that sent it (another key of the same user gets 422, as on every
    route). Fields left at their defaults do not count: a field added later leaves every hash as it was."""
    canonical = json.dumps({"fmu_id": fmu_id, "api_key_id": api_key_id,
                            **request.model_dump(mode="json", exclude_defaults=True)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def created_under(session: Session, model: type[Owner], user_id: str, key: str, digest: str) -> Owner | None:
    """The run or sweep (``model``) an earlier request created under this key; 422
    ``idempotency_key_reused`` if that was another request or credential (``digest``), or if
    another route, or the other kind of row, holds the key."""
    found = session.scalar(select(model).where(model.user_id == user_id, model.idempotency_key == key))
    if found is None:
        if key_held(session, user_id, key, responses=True, rows=(Sweep,) if model is Run else (Run,)):
            raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for a different request.")
        return None
    if found.request_hash != digest:
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for a different request.")
    return found


def key_held(session: Session, user_id: str, key: str, *, responses: bool,
             rows: tuple[type[Run] | type[Sweep], ...]) -> bool:
    """Whether this key is taken, in one statement: by a request to another route (``responses``:
    its response stored, or being made), or by a run or sweep created under it (``rows``)."""
    taken = [exists().where(model.user_id == user_id, model.idempotency_key == key) for model in rows]
    if responses:
        taken.append(exists().where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key,
                                    IdempotencyRecord.expires_at > utcnow()))
    return bool(session.scalar(select(or_(*taken))))


class IdempotencyStore:
    """``db``: where the middleware opens the transactions the store works in."""

    def __init__(self, db: Database, secret: str) -> None:
        self.db = db
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"fmu-gateway idempotent responses").derive(secret.encode())
        self._aead = AESGCM(key)
        self._last_purge = 0.0

    def _seal(self, record_id: int, body: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, body, str(record_id).encode())

    def _open(self, record_id: int, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], str(record_id).encode())

    def claim(self, session: Session, user_id: str, key: str, digest: str, lock_s: float = LOCK_S) -> Claim:
        """Decide what a request with ``key`` does: run, replay, or be refused. A claim to run has
        written (and flushed) its lock, which the caller commits; an ``IntegrityError`` means a
        concurrent first request inserted the key (look again, in a new transaction)."""
        now = utcnow()
        record = session.scalar(select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key).with_for_update())
        if record is not None and record.expires_at <= now:
            session.delete(record)
            session.flush()
            record = None
        if record is None:
            if key_held(session, user_id, key, responses=False, rows=(Run, Sweep)):
                return Claim("mismatch")  # a run submission took it
            record = IdempotencyRecord(user_id=user_id, key=key, request_hash=digest,
                                       locked_until=now + timedelta(seconds=lock_s), expires_at=now + TTL)
            session.add(record)
            session.flush()
            return Claim("run", record.id)
        if record.request_hash != digest:
            return Claim("mismatch")
        if record.status_code is not None:
            return Claim("replay", record.id, record.status_code, dict(record.response_headers or {}),
                         self._open(record.id, record.response_body or b""))
        if record.locked_until > now:
            return Claim("in_use", retry_after_s=max(1, math.ceil((record.locked_until - now).total_seconds())))
        # The first request died without answering: this one takes over.
        record.locked_until = now + timedelta(seconds=lock_s)
        session.flush()
        return Claim("run", record.id)

    @staticmethod
    def renew(session: Session, record_id: int, lock_s: float = LOCK_S) -> None:
        session.execute(update(IdempotencyRecord)
                        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.status_code.is_(None))
                        .values(locked_until=utcnow() + timedelta(seconds=lock_s)))

    def complete(self, session: Session, record_id: int, status_code: int, headers: dict[str, str],
                 body: bytes) -> None:
        session.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == record_id).values(
            status_code=status_code, response_headers=json.loads(json.dumps(headers)),
            response_body=self._seal(record_id, body), locked_until=utcnow()))

    @staticmethod
    def release(session: Session, record_id: int) -> None:
        """Forget a request whose answer must not be replayed (a 5xx, a conflict): a retry runs again."""
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id,
                                                        IdempotencyRecord.status_code.is_(None)))

    def purge_due(self) -> bool:
        """Whether expired records are due a purge (every ``_PURGE_EVERY_S``); taken as done once asked."""
        if time.monotonic() - self._last_purge < _PURGE_EVERY_S:
            return False
        self._last_purge = time.monotonic()
        return True

    @staticmethod
    def purge(session: Session) -> None:
        """Delete the expired records."""
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow()))
