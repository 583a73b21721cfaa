"""Runs: creation (validated spec + credit hold), lookup, listing and their public shape."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import NotFound
from app.models import Run
from app.models.run import FINAL_STATUSES
from app.schemas.run import RunCreate, RunError, RunOut, RunResultInfo, RunTimings
from app.services import pricing, registry_service
from app.services.auth_service import Principal
from app.services.pagination import paginate
from app.services.run_spec import build_run_spec


def _owned(principal: Principal) -> Select[Run]:
    return select(Run).where(Run.user_id == principal.user_id)


def create_run(session: Session, principal: Principal, fmu_id: str, request: RunCreate,
               settings: Settings) -> Run:
    """Validate and insert a queued run; the caller holds its credits and commits."""
    fmu = registry_service.get_fmu(session, principal, fmu_id)
    spec = build_run_spec(request, registry_service.model_info(fmu), settings)
    run = Run(user_id=principal.user_id, fmu_id=fmu.id, status="queued", spec=spec,
              credits_charged=pricing.run_hold_credits())
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, principal: Principal, run_id: str) -> Run:
    run = session.scalar(_owned(principal).where(Run.id == run_id))
    if run is None:
        raise NotFound(f"No run {run_id!r}.")
    return run


def list_runs(session: Session, principal: Principal, limit: int, cursor: str | None, *,
              status: str | None = None, fmu_id: str | None = None) -> tuple[list[Run], str | None]:
    query = _owned(principal)
    if status:
        query = query.where(Run.status == status)
    if fmu_id:
        query = query.where(Run.fmu_id == fmu_id)
    return paginate(session, query, Run.id, limit, cursor)


def is_final(run: Run) -> bool:
    return run.status in FINAL_STATUSES


def result_key(run_id: str) -> str:
    return f"runs/{run_id}/result.arrow"


def log_key(run_id: str) -> str:
    return f"runs/{run_id}/log.txt"


def to_out(run: Run) -> RunOut:
    def seconds(a: datetime | None, b: datetime | None) -> float | None:
        if a is not None and b is not None:
            return round((b - a).total_seconds(), 6)
        return None

    result = None
    if run.result_rows is not None and run.result_columns is not None:
        result = RunResultInfo(rows=run.result_rows, columns=run.result_columns, bytes=run.result_bytes or 0)
    return RunOut(
        id=run.id, fmu_id=run.fmu_id, status=run.status,
        spec=run.spec,
        error=RunError(code=run.error_code, message=run.error_message) if run.error_code else None,
        result=result,
        timings=RunTimings(queued_s=seconds(run.created_at, run.started_at), run_s=run.wall_time_s,
                           cpu_s=run.cpu_time_s, total_s=seconds(run.created_at, run.finished_at)),
        max_rss_bytes=run.max_rss_bytes, credits_charged=run.credits_charged,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
    )
