"""``/v1/fmus``: upload, list, get, delete, variables. Thin: parsing here, decisions in registry_service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.auth.dependencies import Ctx, DbSession, FmusRead, FmusWrite
from app.auth.service import Principal
from app.billing import limits
from app.fmi.model_description import DefaultExperiment, Variable
from app.fmus import service as registry_service
from app.fmus.models import Fmu
from app.fmus.schemas import DETAIL_MAX_VARIABLES, FmuDetail, FmuSummary, FmuUpdate
from app.fmus.upload_stream import receive_upload
from app.kit.params import Cursor, Limit, ResourceId
from app.kit.schemas import Page
from app.storage_admission import STORAGE_FULL_RESPONSE

router = APIRouter(prefix="/v1/fmus", tags=["fmus"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _summary(fmu: Fmu, shared: registry_service.SharedWithCaller | None = None) -> FmuSummary:
    # From the summary columns only: listing never reads (or loads) model_info.
    return FmuSummary(
        id=fmu.id, sha256=fmu.sha256, size=fmu.size, filename=fmu.filename,
        fmi_version=fmu.fmi_version, model_name=fmu.model_name, description=fmu.description,
        generation_tool=fmu.generation_tool, guid=fmu.guid,
        supports_model_exchange=fmu.supports_model_exchange,
        supports_co_simulation=fmu.supports_co_simulation,
        default_experiment=(DefaultExperiment.model_validate(fmu.default_experiment)
                            if fmu.default_experiment is not None else None),
        platforms=fmu.platforms, variable_count=fmu.variable_count, deterministic=fmu.deterministic,
        shared_by=shared.shared_by if shared else None,
        price_credits_per_run=shared.price_credits_per_run if shared else None, created_at=fmu.created_at,
    )


def _detail(fmu: Fmu, shared: registry_service.SharedWithCaller | None = None) -> FmuDetail:
    variables = registry_service.model_info(fmu).variables[:DETAIL_MAX_VARIABLES]
    return FmuDetail(**_summary(fmu, shared).model_dump(), variables=variables)


def _usable_detail(session: DbSession, principal: Principal, fmu_id: str) -> FmuDetail:
    usable = registry_service.get_usable(session, principal, fmu_id)
    shared = registry_service.shared_with(session, principal, [fmu_id]).get(fmu_id) if usable.grant else None
    return _detail(usable.fmu, shared)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FmuDetail,
             openapi_extra=UPLOAD_BODY,
             responses={200: {"model": FmuDetail, "description": "These bytes were already uploaded."},
                        **STORAGE_FULL_RESPONSE})
async def upload_fmu(request: Request, response: Response, ctx: Ctx, principal: FmusWrite) -> FmuDetail:
    """Upload an FMU (multipart field ``file``). The same bytes again return the existing FMU."""
    settings = ctx.settings
    caller = limits.for_caller(principal, settings)
    received = await receive_upload(request, settings.upload_tmp_dir, caller.max_fmu_bytes)

    def store(owner: Principal) -> tuple[FmuDetail, bool]:
        with ctx.db.session(write=True) as session:
            fmu, created = registry_service.upload(session, owner, received, limits=ctx.archive_limits, caller=caller)
            try:
                if created:
                    registry_service.store_files(received, storage=ctx.storage, cache=ctx.cache)
                session.commit()
            except BaseException:
                session.rollback()
                if created:
                    registry_service.discard_upload(session, received.sha256, storage=ctx.storage, cache=ctx.cache)
                raise
            return _detail(fmu), created

    try:
        detail, created = await run_in_threadpool(store, principal)
    finally:
        received.path.unlink(missing_ok=True)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/fmus/{detail.id}"
    return detail


@router.get("", response_model=Page[FmuSummary])
def list_fmus(session: DbSession, principal: FmusRead,
              limit: Limit = 20, cursor: Cursor = None,
              sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$",
                                                  description="Only the FMU with these bytes.")] = None,
              ) -> Page[FmuSummary]:
    """Your FMUs and those shared with you (``shared_by`` set), newest first."""
    fmus, next_cursor, shared = registry_service.list_fmus(session, principal, limit, cursor, sha256)
    return Page(data=[_summary(f, shared.get(f.id)) for f in fmus], has_more=next_cursor is not None,
                next_cursor=next_cursor)


@router.get("/{fmu_id}", response_model=FmuDetail)
def get_fmu(fmu_id: ResourceId, session: DbSession, principal: FmusRead) -> FmuDetail:
    return _usable_detail(session, principal, fmu_id)


@router.patch("/{fmu_id}", response_model=FmuDetail)
def update_fmu(fmu_id: ResourceId, body: FmuUpdate, ctx: Ctx, principal: FmusWrite) -> FmuDetail:
    """Say whether the model is deterministic (only its owner)."""
    with ctx.db.session(write=True) as session:
        fmu = registry_service.set_deterministic(session, principal, fmu_id, body.deterministic)
        session.commit()
        return _detail(fmu)


@router.get("/{fmu_id}/variables", response_model=Page[Variable])
def list_variables(fmu_id: ResourceId, session: DbSession, principal: FmusRead,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   cursor: Annotated[str | None, Query(pattern="^[0-9]{0,9}$")] = None,
                   q: Annotated[str | None, Query(max_length=200, description=(
                       "Only variables whose name or description contains this (any case)."))] = None,
                   ) -> Page[Variable]:
    """The model's variables in model order, a page at a time."""
    fmu = registry_service.get_usable(session, principal, fmu_id).fmu
    variables, next_cursor = registry_service.variables_page(fmu, limit, cursor, q)
    return Page(data=variables, has_more=next_cursor is not None, next_cursor=next_cursor)


@router.delete("/{fmu_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_fmu(fmu_id: ResourceId, ctx: Ctx, principal: FmusWrite) -> Response:
    with ctx.db.session(write=True) as session:
        fmu = registry_service.delete_fmu(session, principal, fmu_id)
        session.commit()
        registry_service.release_blob_if_unreferenced(session, fmu.sha256, storage=ctx.storage, cache=ctx.cache)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
