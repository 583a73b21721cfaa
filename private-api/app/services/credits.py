"""Credit balance changes. The balance can never go below zero: every debit is a
conditional UPDATE, backed by the ``credits_non_negative`` CHECK constraint."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.errors import ProblemError
from app.models import Run, User


class InsufficientCredits(ProblemError):
    status = 402
    code = "insufficient_credits"
    title = "Insufficient credits"


def hold_credits(session: Session, user_id: str, amount: int) -> None:
    result = session.execute(
        update(User).where(User.id == user_id, User.credits >= amount)
        .values(credits=User.credits - amount).execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise InsufficientCredits(f"This run needs {amount} credit(s); your balance is too low.",
                                  required=amount)


def refund_credits(session: Session, user_id: str, amount: int) -> None:
    session.execute(
        update(User).where(User.id == user_id).values(credits=User.credits + amount)
        .execution_options(synchronize_session=False)
    )


def refund_run(session: Session, run: Run) -> None:
    """Give a run's whole charge back (platform failure, cancelled before it started)."""
    if run.credits_charged:
        refund_credits(session, run.user_id, run.credits_charged)
        run.credits_charged = 0
        session.flush()
