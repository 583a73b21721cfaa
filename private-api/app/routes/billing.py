"""``/v1/billing``: the caller's credit balance, and the hook the execute route charges through."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.models import Run, User
from app.routes.deps import BillingRead, DbSession
from app.services import credits

router = APIRouter(prefix="/v1/billing", tags=["billing"])


class Balance(BaseModel):
    credits: int


def decrement_user_credits(session: Session, run: Run) -> None:
    """Hold a new run's worst-case credits in the caller's transaction (402 ``insufficient_credits``
    if short); the worker settles the hold when the run ends."""
    credits.hold_for_run(session, run)


@router.get("/balance", response_model=Balance)
def get_balance(session: DbSession, principal: BillingRead) -> Balance:
    user = session.get(User, principal.user_id)
    return Balance(credits=user.credits if user else 0)
