"""Sharing a model: an owner grants a user (by email) the right to see and run an FMU, never to
read its files, at a price per run; revokes it; and sees what the grantees ran and paid.

A grantee reaches the model through ``app.fmus.service.get_usable``; their runs hold the owner's
price on top of the platform's, and the settlement pays the owner (``app.billing.credits.pay_owners``).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.billing import repository as billing_repository
from app.errors import NotFound, ProblemError
from app.fmus import service as registry_service
from app.kit.models import utcnow
from app.kit.pagination import paginate
from app.sharing import repository as sharing_repository
from app.sharing.models import FmuGrant
from app.sharing.schemas import DailyEarnings, FmuUsage, GrantCreate, GranteeUsage, GrantOut

# How far back an owner's daily figures go.
USAGE_DAYS = 90


class GrantExists(ProblemError):
    status = 409
    code = "grant_exists"
    title = "The model is already shared with this email"


class TooManyGrants(ProblemError):
    status = 409
    code = "too_many_grants"
    title = "The model has the most live grants it may have"


class GrantToSelf(ProblemError):
    status = 422
    code = "grant_to_self"
    title = "A model cannot be shared with its owner"


def share(session: Session, principal: Principal, fmu_id: str, request: GrantCreate, *,
          max_grants: int) -> FmuGrant:
    """A live grant of the caller's FMU to ``request.email`` (409 if it has one already, or if the
    model has ``max_grants`` live ones)."""
    fmu = registry_service.get_fmu(session, principal, fmu_id)  # the owner's alone: 404 for anyone else
    email = request.email.lower()
    owner = billing_repository.get_user(session, principal.user_id)
    if owner is not None and owner.email.lower() == email:
        raise GrantToSelf("You own this model; share it with someone else's email.")
    if sharing_repository.count_live(session, fmu.id) >= max_grants:
        raise TooManyGrants(f"FMU {fmu_id!r} is shared with {max_grants} users, the most one model may be; "
                            "revoke a grant first.", limit=max_grants)
    grant = FmuGrant(fmu_id=fmu.id, owner_id=principal.user_id, email=email,
                     price_credits_per_run=request.price_credits_per_run, created_at=utcnow())
    if not sharing_repository.insert(session, grant):
        raise GrantExists(f"FMU {fmu_id!r} is already shared with {email}; revoke that grant to change it.")
    return grant


def list_grants(session: Session, principal: Principal, fmu_id: str, limit: int,
                cursor: str | None) -> tuple[list[FmuGrant], str | None]:
    fmu = registry_service.get_fmu(session, principal, fmu_id)
    return paginate(session, sharing_repository.of_fmu(fmu.id), FmuGrant.id, limit, cursor)


def revoke(session: Session, principal: Principal, fmu_id: str, grant_id: str) -> FmuGrant:
    """From now on the grantee can start no run of the model (those accepted finish, and pay the
    owner as any other). Revoking twice is the same as once."""
    fmu = registry_service.get_fmu(session, principal, fmu_id)
    grant = sharing_repository.get(session, fmu.id, grant_id)
    if grant is None:
        raise NotFound(f"No grant {grant_id!r} of FMU {fmu_id!r}.")
    sharing_repository.revoke(session, grant.id, utcnow())
    session.refresh(grant)
    return grant


def to_outs(session: Session, grants: list[FmuGrant]) -> list[GrantOut]:
    ids = [g.id for g in grants]
    runs, earned = sharing_repository.runs_per_grant(session, ids), sharing_repository.earnings_per_grant(session, ids)
    return [GrantOut(id=g.id, fmu_id=g.fmu_id, email=g.email, price_credits_per_run=g.price_credits_per_run,
                     created_at=g.created_at, revoked_at=g.revoked_at, runs=runs.get(g.id, 0),
                     earned_credits=earned.get(g.id, 0)) for g in grants]


def usage(session: Session, principal: Principal, fmu_id: str) -> FmuUsage:
    """The owner's view of a shared model: runs and earnings per grantee, and per day."""
    fmu = registry_service.get_fmu(session, principal, fmu_id)
    rows = sharing_repository.usage_by_grantee(session, fmu.id)
    earned = sharing_repository.earnings_per_grant(session, [row[0] for row in rows])
    by_grantee = [GranteeUsage(grant_id=row[0], email=row[1], runs=int(row[2]), succeeded=int(row[3]),
                               earned_credits=earned.get(row[0], 0)) for row in rows]
    since = utcnow() - timedelta(days=USAGE_DAYS)
    days: dict[str, list[int]] = {}
    for day, runs in sharing_repository.runs_per_day(session, fmu.id, since):
        days.setdefault(str(day)[:10], [0, 0])[0] = int(runs)
    for day, credits in sharing_repository.earnings_per_day(session, principal.user_id, fmu.id, since):
        days.setdefault(str(day)[:10], [0, 0])[1] = int(credits)
    by_day = [DailyEarnings(day=date.fromisoformat(day), runs=runs, earned_credits=credits)
              for day, (runs, credits) in sorted(days.items(), reverse=True)]
    return FmuUsage(fmu_id=fmu.id, by_grantee=by_grantee, by_day=by_day)
