"""``/v1/fmus/{id}/grants`` and ``/v1/fmus/{id}/usage``: share a model, list and revoke its
grants, see what grantees ran and paid. Only the model's owner reaches these (404 for anyone else)."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.auth.dependencies import Ctx, DbSession, FmusRead, FmusWrite
from app.kit.params import Cursor, Limit, ResourceId
from app.kit.schemas import Page
from app.sharing import service as sharing_service
from app.sharing.schemas import FmuUsage, GrantCreate, GrantOut

router = APIRouter(prefix="/v1/fmus/{fmu_id}", tags=["sharing"])


@router.post("/grants", response_model=GrantOut, status_code=status.HTTP_201_CREATED, responses={409: {
    "description": "`grant_exists`: the model is shared with this email already; `too_many_grants`: it has "
                   "the most live grants one model may have."}})
def create_grant(fmu_id: ResourceId, body: GrantCreate, ctx: Ctx, principal: FmusWrite) -> GrantOut:
    """Share your model with whoever has (or later signs up with) ``email``: they see it in their
    list, read its variables and run or sweep it, paying you ``price_credits_per_run`` for each run
    that succeeds; no route gives them its files. 409 ``grant_exists`` if it is shared with them,
    ``too_many_grants`` if it has ``max_grants_per_fmu`` live grants."""
    with ctx.db.session(write=True) as session:
        grant = sharing_service.share(session, principal, fmu_id, body, max_grants=ctx.settings.max_grants_per_fmu)
        session.commit()
        return sharing_service.to_outs(session, [grant])[0]


@router.get("/grants", response_model=Page[GrantOut])
def list_grants(fmu_id: ResourceId, session: DbSession, principal: FmusRead,
                limit: Limit = 20, cursor: Cursor = None) -> Page[GrantOut]:
    """The model's grants, live and revoked, newest first, each with its runs and your earnings."""
    grants, next_cursor = sharing_service.list_grants(session, principal, fmu_id, limit, cursor)
    return Page(data=sharing_service.to_outs(session, grants), has_more=next_cursor is not None,
                next_cursor=next_cursor)


@router.delete("/grants/{grant_id}", response_model=GrantOut)
def revoke_grant(fmu_id: ResourceId, grant_id: ResourceId, ctx: Ctx, principal: FmusWrite) -> GrantOut:
    """Revoke a grant: the grantee's next run is refused (404), runs already accepted finish."""
    with ctx.db.session(write=True) as session:
        grant = sharing_service.revoke(session, principal, fmu_id, grant_id)
        session.commit()
        return sharing_service.to_outs(session, [grant])[0]


@router.get("/usage", response_model=FmuUsage)
def get_usage(fmu_id: ResourceId, session: DbSession, principal: FmusRead) -> FmuUsage:
    """Runs of your shared model per grantee, and runs and earnings per day (UTC)."""
    return sharing_service.usage(session, principal, fmu_id)
