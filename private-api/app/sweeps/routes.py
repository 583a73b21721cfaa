"""``/v1/fmus/{id}/sweeps`` and ``/v1/sweeps``: submit a parameter study, follow it, fetch its
tables, cancel it. Decisions in sweep_service, tables in sweep_results."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from app.auth.dependencies import Ctx, RunsRead, RunsWrite
from app.auth.service import Principal
from app.context import AppContext
from app.fmus import service as registry_service
from app.fmus.models import Fmu
from app.idempotency.middleware import owns_idempotency_key
from app.kit.params import Cursor, IdempotencyKey, IdFilter, Limit, ResourceId
from app.kit.schemas import Page
from app.runs import result_formats
from app.runs.models import RunStatus
from app.runs.routes import DryRun
from app.runs.schemas import Quote
from app.storage_admission import STORAGE_FULL_RESPONSE
from app.sweeps import results as sweep_results
from app.sweeps import service as sweep_service
from app.sweeps.models import FINAL_SWEEP_STATUSES, Sweep
from app.sweeps.schemas import SweepCounts, SweepCreate, SweepOut, SweepRunOut
from app.sweeps.service import Progress, SweepNotFinished
from app.sweeps.space import parameter_names

router = APIRouter(tags=["sweeps"])

TABLE_FORMATS = ("arrow", "parquet", "csv")


def _table_responses(formats: tuple[str, ...], description: str) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {result_formats.FORMATS[f].media_type: {} for f in formats},
                  "description": description}}


def sweep_outs(ctx: AppContext, session: Session, sweeps: list[Sweep]) -> list[SweepOut]:
    """The sweeps with their progress; one whose children all ended is marked finished now."""
    progress = sweep_service.progress_of(session, [s.id for s in sweeps])
    finishing = [s.id for s in sweeps if sweep_service.needs_finishing(s, progress[s.id])]
    if finishing:
        with ctx.db.session(write=True) as writer:
            states = {sweep_id: sweep_service.mark_finished(writer, sweep_id) for sweep_id in finishing}
            writer.commit()
        for sweep in sweeps:
            if sweep.id in states:
                sweep_service.as_stored(sweep, states[sweep.id])
    return [sweep_service.to_out(s, progress[s.id]) for s in sweeps]


def load_sweep(ctx: AppContext, principal: Principal, sweep_id: str) -> SweepOut:
    with ctx.db.session() as session:
        return sweep_outs(ctx, session, [sweep_service.get_sweep(session, principal, sweep_id)])[0]


def _quote(ctx: AppContext, principal: Principal, fmu_id: str, body: SweepCreate) -> JSONResponse:
    with ctx.db.session() as session:
        quote = sweep_service.quote_sweep(session, principal, fmu_id, body, ctx.settings)
    return JSONResponse(quote.model_dump(mode="json"))


@router.post("/v1/fmus/{fmu_id}/sweeps", response_model=SweepOut, status_code=status.HTTP_202_ACCEPTED,
             responses={200: {"model": Quote, "description": "With `dry_run`: what the sweep would hold."},
                        **STORAGE_FULL_RESPONSE})
@owns_idempotency_key  # the sweep row keeps the key: a retry is answered with the sweep as it is now
async def create_sweep(fmu_id: ResourceId, body: SweepCreate, ctx: Ctx, principal: RunsWrite,
                       dry_run: DryRun = False, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Submit a parameter sweep: its child runs are created and their credits held in one
    transaction (402 ``insufficient_credits`` if the balance does not cover every child's worst
    case; nothing is created then), then queued; children the run cache answers are final at
    once. 202 with ``Location``; follow it with ``GET /v1/sweeps/{id}`` or ``/events``."""
    if dry_run:
        return await run_in_threadpool(_quote, ctx, principal, fmu_id, body)

    def submit() -> tuple[SweepOut, list[str], bool]:
        with ctx.db.session(write=True) as session:
            created = sweep_service.create_sweep(session, principal, fmu_id, body, ctx.settings, idempotency_key)
            sweep = created.sweep
            if not created.replayed:
                session.commit()
                counts = SweepCounts(queued=sweep.total - created.served, succeeded=created.served)
                return (sweep_service.to_out(sweep, Progress(counts, created.served_charge)), created.dispatch,
                        False)
        # Read as it is now once the submission's transaction is over: that read may mark it
        # finished, a write of its own (on SQLite it would wait for the one still open).
        return load_sweep(ctx, principal, sweep.id), [], True

    try:
        sweep, run_ids, replayed = await run_in_threadpool(submit)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first: answer with its sweep.
        sweep, run_ids, replayed = await run_in_threadpool(submit)
    ctx.dispatcher.submit_many(run_ids)
    response = JSONResponse(sweep.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED,
                            headers={"Location": f"/v1/sweeps/{sweep.id}"})
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/v1/sweeps", response_model=Page[SweepOut])
def list_sweeps(ctx: Ctx, principal: RunsRead, limit: Limit = 20,
                cursor: Cursor = None, fmu_id: IdFilter = None) -> Page[SweepOut]:
    with ctx.db.session() as session:
        sweeps, next_cursor = sweep_service.list_sweeps(session, principal, limit, cursor, fmu_id=fmu_id)
        return Page(data=sweep_outs(ctx, session, sweeps), has_more=next_cursor is not None, next_cursor=next_cursor)


@router.get("/v1/sweeps/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: ResourceId, ctx: Ctx, principal: RunsRead) -> SweepOut:
    """Counts of the children per status, progress and credits; ``finished`` once every child is
    final (a failed child does not fail the sweep)."""
    return load_sweep(ctx, principal, sweep_id)


@router.get("/v1/sweeps/{sweep_id}/runs", response_model=Page[SweepRunOut])
def list_sweep_runs(sweep_id: ResourceId, ctx: Ctx, principal: RunsRead,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: Cursor = None,
                    status: RunStatus | None = None) -> Page[SweepRunOut]:
    """The child runs in sweep_index order, each with its parameters."""
    with ctx.db.session() as session:
        sweep = sweep_service.get_sweep(session, principal, sweep_id)
        runs, next_cursor = sweep_service.list_children(session, sweep, limit, cursor, status=status)
        return Page(data=[sweep_service.child_to_out(sweep, run) for run in runs], has_more=next_cursor is not None,
                    next_cursor=next_cursor)


@router.post("/v1/sweeps/{sweep_id}/cancel", response_model=SweepOut)
def cancel_sweep(sweep_id: ResourceId, ctx: Ctx, principal: RunsWrite) -> SweepOut:
    """Cancel every unfinished child: queued ones give their hold back, running ones are stopped
    and charged for the time they ran. 409 ``sweep_finished`` if every child had ended."""
    with ctx.db.session(write=True) as session:
        sweep, was_running = sweep_service.cancel_sweep(session, principal, sweep_id)
        session.commit()
    for run_id in was_running:
        ctx.runner.cancel(run_id)
    ctx.notifier.publish(sweep.id)
    return load_sweep(ctx, principal, sweep_id)


def _final_sweep(ctx: AppContext, session: Session, principal: Principal, sweep_id: str) -> Sweep:
    sweep = sweep_service.get_sweep(session, principal, sweep_id)
    out = sweep_outs(ctx, session, [sweep])[0]
    if out.status not in FINAL_SWEEP_STATUSES:
        raise SweepNotFinished(f"Sweep {sweep_id!r} is {out.status}; its result is not ready.",
                               sweep_status=out.status)
    return sweep


@router.get("/v1/sweeps/{sweep_id}/result", response_class=Response,
            responses=_table_responses(TABLE_FORMATS, "One long table: sweep_index, the parameters, then the "
                                                      "time series of every succeeded child."))
def get_sweep_result(sweep_id: ResourceId, ctx: Ctx, principal: RunsRead,
                     format: Literal["arrow", "parquet", "csv"] = "arrow") -> Response:
    """The children's results stacked (409 ``sweep_not_finished`` until the sweep is final).
    Failed children have no rows; ``/summary`` lists them with their error."""
    fmt = result_formats.FORMATS[format]
    with tempfile.NamedTemporaryFile(dir=ctx.settings.upload_tmp_dir, prefix="sweep-", suffix=f".{fmt.extension}",
                                     delete=False) as handle:
        dest = Path(handle.name)
    try:
        with ctx.db.session() as session:
            sweep = _final_sweep(ctx, session, principal, sweep_id)
            info = registry_service.model_info(session.get_one(Fmu, sweep.fmu_id))
            # Child by child into a file: memory stays at one child's result however large the sweep.
            sweep_results.write_result(ctx.storage, info, parameter_names(sweep.method, sweep.parameters),
                                       sweep_service.iter_children(session, sweep), format, dest)
    except BaseException:
        sweep_results.remove_quietly(dest)
        raise
    return FileResponse(dest, media_type=fmt.media_type, filename=f"{sweep_id}.{fmt.extension}",
                        background=BackgroundTask(sweep_results.remove_quietly, dest))


@router.get("/v1/sweeps/{sweep_id}/summary", response_class=Response,
            responses=_table_responses(("json", *TABLE_FORMATS), "One row per child: sweep_index, run_id, "
                                                                 "status, error_code, the parameters, then "
                                                                 "final/min/max of each output."))
def get_sweep_summary(sweep_id: ResourceId, ctx: Ctx, principal: RunsRead,
                      format: Literal["json", "arrow", "parquet", "csv"] = "json") -> Response:
    """Available while the sweep runs: unfinished children have no statistics yet."""
    with ctx.db.session() as session:
        sweep = sweep_service.get_sweep(session, principal, sweep_id)
        info = registry_service.model_info(session.get_one(Fmu, sweep.fmu_id))
        table = sweep_results.summary_table(ctx.storage, info, parameter_names(sweep.method, sweep.parameters),
                                            sweep_service.iter_children(session, sweep))
    fmt = result_formats.FORMATS[format]
    return Response(result_formats.encode(table, format), media_type=fmt.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{sweep_id}-summary.{fmt.extension}"'})
