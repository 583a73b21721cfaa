"""``/v1/fmus``: upload, list, get, delete. Thin: parsing here, decisions in registry_service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.models import Fmu
from app.routes.deps import Ctx, DbSession, FmusRead, FmusWrite
from app.routes.upload_stream import receive_upload
from app.schemas.common import Page
from app.schemas.fmu import FmuDetail, FmuSummary
from app.services import limits, registry_service
from app.services.auth_service import Principal

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


def _detail(fmu: Fmu) -> FmuDetail:
    info = registry_service.model_info(fmu)
    return FmuDetail(
        id=fmu.id, sha256=fmu.sha256, size=fmu.size, filename=fmu.filename,
        fmi_version=fmu.fmi_version, model_name=fmu.model_name, description=fmu.description,
        generation_tool=fmu.generation_tool, guid=fmu.guid,
        supports_model_exchange=fmu.supports_model_exchange,
        supports_co_simulation=fmu.supports_co_simulation,
        default_experiment=info.default_experiment, platforms=info.platforms,
        variables=info.variables, created_at=fmu.created_at,
    )


def _summary(fmu: Fmu) -> FmuSummary:
    return FmuSummary.model_validate(_detail(fmu).model_dump(exclude={"variables"}))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FmuDetail,
             openapi_extra=UPLOAD_BODY,
             responses={200: {"model": FmuDetail, "description": "These bytes were already uploaded."}})
async def upload_fmu(request: Request, response: Response, ctx: Ctx, principal: FmusWrite) -> FmuDetail:
    """Upload an FMU (multipart field ``file``). The same bytes again return the existing FMU."""
    settings = ctx.settings
    caller = limits.for_caller(principal, settings)
    received = await receive_upload(request, settings.upload_tmp_dir, caller.max_fmu_bytes)

    def store(owner: Principal) -> tuple[FmuDetail, bool]:
        with ctx.db.session(write=True) as session:
            fmu, created = registry_service.upload(session, owner, received, storage=ctx.storage,
                                                   cache=ctx.cache, limits=ctx.archive_limits, caller=caller)
            session.commit()
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
              limit: Annotated[int, Query(ge=1, le=100)] = 20, cursor: str | None = None,
              sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$",
                                                  description="Only the FMU with these bytes.")] = None,
              ) -> Page[FmuSummary]:
    fmus, next_cursor = registry_service.list_fmus(session, principal, limit, cursor, sha256)
    return Page(data=[_summary(f) for f in fmus], has_more=next_cursor is not None, next_cursor=next_cursor)


@router.get("/{fmu_id}", response_model=FmuDetail)
def get_fmu(fmu_id: str, session: DbSession, principal: FmusRead) -> FmuDetail:
    return _detail(registry_service.get_fmu(session, principal, fmu_id))


@router.delete("/{fmu_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_fmu(fmu_id: str, ctx: Ctx, principal: FmusWrite) -> Response:
    with ctx.db.session(write=True) as session:
        fmu = registry_service.delete_fmu(session, principal, fmu_id)
        session.commit()
        registry_service.release_blob_if_unreferenced(session, fmu.sha256, storage=ctx.storage, cache=ctx.cache)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
