"""Users, balances and runs written straight to a test database, for ledger and lifecycle tests."""

from __future__ import annotations

import threading

from sqlalchemy import func, select, text

from app.auth.models import User
from app.auth.service import create_user
from app.billing import credits
from app.billing.models import LedgerEntry
from app.db import Database
from app.kit.models import utcnow
from app.runs.models import Run


def new_user(db: Database, balance: int = 0) -> str:
    with db.session(write=True) as session:
        user = create_user(session, f"{threading.get_ident()}-{utcnow().timestamp()}@example.com", balance)
        session.commit()
        return user.id


def state(db: Database, user_id: str) -> tuple[int, int, int]:
    """(balance, debt, sum of ledger entries)."""
    with db.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                               .where(LedgerEntry.user_id == user_id))
        return user.credits, user.debt_credits, int(total or 0)


def make_run(db: Database, user_id: str, held: int, *, fmu_owner: str | None = None, owner_credits: int = 0) -> Run:
    """A queued run of ``user_id`` (on a placeholder FMU of theirs, or of ``fmu_owner``, who is paid
    ``owner_credits`` when it succeeds) whose hold is taken."""
    owner = fmu_owner or user_id
    with db.session(write=True) as session:
        session.execute(text("INSERT INTO fmus (id, user_id, sha256, size, fmi_version, model_name, guid, "
                             "supports_model_exchange, supports_co_simulation, model_info, created_at) VALUES "
                             "(:id, :user, 'x', 1, '2.0', 'M', 'g', true, true, '{}', :now) ON CONFLICT DO NOTHING"),
                        {"id": f"fmu_{owner}", "user": owner, "now": utcnow()})
        run = Run(user_id=user_id, fmu_id=f"fmu_{owner}", spec={}, credits_held=held, owner_credits=owner_credits)
        session.add(run)
        session.flush()
        credits.hold_for_run(session, run)
        session.commit()
        return run
