"""``/v1/fmus/{id}/runs`` and ``/v1/runs``: submit, wait, inspect, fetch results and logs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError

from app.auth.dependencies import Ctx, DbSession, RunsRead, RunsWrite
from app.auth.service import Principal
from app.context import AppContext
from app.dispatch.notifier import STARTED
from app.errors import ResultExpired, ResultUnavailable, RunNotFinished
from app.idempotency.middleware import owns_idempotency_key
from app.kit.params import Cursor, IdempotencyKey, IdFilter, Limit, ResourceId
from app.kit.schemas import Page
from app.runs import result_delivery, result_formats
from app.runs import service as run_service
from app.runs.models import FINAL_STATUSES, RunStatus
from app.runs.schemas import Quote, RunCreate, RunOut
from app.storage_admission import STORAGE_FULL_RESPONSE

router = APIRouter(tags=["runs"])

# Results up to this size are sent from memory in one piece; larger ones are streamed.
SMALL_RESULT_BYTES = 1 << 20
# A long-poll re-reads its run after this long without news, then twice as long each time, up to
# events_poll_max_s.
_FIRST_REREAD_S = 1.0

WaitSeconds = Annotated[float, Query(ge=0, allow_inf_nan=False,
                                     description="Seconds to wait for the run to finish (long-poll).")]


def _load(ctx: AppContext, principal: Principal, run_id: str) -> RunOut:
    with ctx.db.session() as session:
        return run_service.to_out(run_service.get_run(session, principal, run_id))


def _status(ctx: AppContext, run_id: str) -> str | None:
    with ctx.db.session() as session:
        return run_service.status_of(session, run_id)


async def _wait_for_final(ctx: AppContext, principal: Principal, run_id: str, wait: float,
                          run: RunOut | None = None, subscribed: Callable[[], None] | None = None) -> RunOut:
    """The run once final, or as it is when ``wait`` runs out. ``run``: its state as the caller
    knows it (not read again); ``subscribed``: called once changes can no longer be missed."""
    deadline = time.monotonic() + min(wait, ctx.settings.max_wait_s)
    with ctx.notifier.subscribe(run_id) as changed:
        if subscribed is not None:
            subscribed()
        if run is None:
            run = await run_in_threadpool(_load, ctx, principal, run_id)
        reread_s = _FIRST_REREAD_S
        stale = False  # a re-read found the status unchanged and did not read the rest
        while run.status not in FINAL_STATUSES and (remaining := deadline - time.monotonic()) > 0:
            # Another process changing the run wakes us over Redis; the re-read is for a message
            # lost on the way, backing off as streams do (200 parked requests re-reading every
            # second cost more than the runs they wait for).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, reread_s))
            reread_s = min(reread_s * 2, max(ctx.settings.events_poll_max_s, _FIRST_REREAD_S))
            woken, state = changed.is_set(), changed.state
            if isinstance(state, RunOut):
                return state  # finished by this process's worker: no read back
            changed.clear()  # before the read: a change during it wakes the next wait
            if woken and state == STARTED:  # a start here is not worth a read
                continue
            # Its status first (one indexed column): under load, most re-reads find nothing new,
            # and building the whole run each time cost more than its wait.
            stale = not woken and await run_in_threadpool(_status, ctx, run_id) == run.status
            if not stale:
                run = await run_in_threadpool(_load, ctx, principal, run_id)
    if stale:
        run = await run_in_threadpool(_load, ctx, principal, run_id)  # answered as it is now
    return run


def _respond(run: RunOut) -> JSONResponse:
    final = run.status in FINAL_STATUSES
    code = status.HTTP_200_OK if final else status.HTTP_202_ACCEPTED
    return JSONResponse(run.model_dump(mode="json"), status_code=code,
                        headers={"Location": f"/v1/runs/{run.id}"})


def _submit(ctx: AppContext, principal: Principal, fmu_id: str, body: RunCreate,
            idempotency_key: str | None) -> tuple[RunOut, bool, Callable[[], None] | None]:
    """The submission's one transaction, which this request owns: the run, whether an earlier
    request made it, and what starts it."""
    with ctx.db.session(write=True) as session:
        submission = run_service.submit_run(session, ctx, principal, fmu_id, body, idempotency_key)
        try:
            session.commit()
        except BaseException:
            run_service.abandon(ctx, submission)
            raise
        return run_service.to_out(submission.run), submission.replayed, run_service.start(ctx, submission)


ResultFormatName = Literal["arrow", "parquet", "csv", "json"]
InlineResult = Annotated[ResultFormatName | None, Query(description=(
    "With `wait`: a run that succeeds within it is answered 200 with its result in this format (as "
    "`GET /v1/runs/{id}/result` sends it, with `Content-Disposition`; the run at `Location`) instead of "
    "the run: submission, wait and values in one round trip. Any other outcome, and results served "
    "by presigned URL, are answered with the run, as without it."))]

DryRun = Annotated[bool, Query(description=(
    "Validate the request and answer 200 with a quote (what it would hold) instead: nothing is placed or held."))]


def _quote(ctx: AppContext, principal: Principal, fmu_id: str, body: RunCreate) -> JSONResponse:
    with ctx.db.session() as session:
        planned = run_service.plan_run(session, principal, fmu_id, body, ctx.settings)
        quote = run_service.quote(session, principal, planned, runs=1)
    return JSONResponse(quote.model_dump(mode="json"))


@router.post("/v1/fmus/{fmu_id}/runs", response_model=RunOut, status_code=status.HTTP_202_ACCEPTED,
             responses={200: {"model": RunOut | Quote,
                              "content": {fmt.media_type: {} for fmt in result_formats.FORMATS.values()},
                              "description": "The run finished within `wait` (or was served from the run cache); "
                                             "with `dry_run`, the quote; with `result`, a run that succeeded "
                                             "is answered with its result table."},
                        **STORAGE_FULL_RESPONSE})
@owns_idempotency_key  # the run row keeps the key: a retry is answered with the run as it is now
async def create_run(fmu_id: ResourceId, body: RunCreate, ctx: Ctx, principal: RunsWrite,
                     wait: WaitSeconds = 0, dry_run: DryRun = False, result: InlineResult = None,
                     idempotency_key: IdempotencyKey = None) -> Response:
    """Submit a simulation: 202 with ``Location`` while it runs; with ``?wait=`` 200 and the
    finished run if it ends in time (with ``result=``, its result if it succeeded). A run the run
    cache answers is 200 at once, with ``cached_from``."""
    if dry_run:
        return await run_in_threadpool(_quote, ctx, principal, fmu_id, body)

    submit = partial(_submit, ctx, principal, fmu_id, body, idempotency_key)
    # Shielded: once committed, the run is started whatever happens to this request (a booked
    # worker must not be lost; below, nothing awaits before ``start`` is called).
    with anyio.CancelScope(shield=True):
        try:
            run, replayed, start = await run_in_threadpool(submit)
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key committed first: answer with its run.
            run, replayed, start = await run_in_threadpool(submit)
    if start is None:
        if wait > 0:
            run = await _wait_for_final(ctx, principal, run.id, wait)
    elif wait > 0:
        run = await _wait_for_final(ctx, principal, run.id, wait, run, start)
    else:
        start()
    response = _respond(run) if result is None else await _result_or_run(ctx, run, result)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/v1/runs", response_model=Page[RunOut])
def list_runs(session: DbSession, principal: RunsRead,
              limit: Limit = 20, cursor: Cursor = None,
              status: RunStatus | None = None, fmu_id: IdFilter = None) -> Page[RunOut]:
    runs, next_cursor = run_service.list_runs(session, principal, limit, cursor, status=status, fmu_id=fmu_id)
    return Page(data=[run_service.to_out(r) for r in runs], has_more=next_cursor is not None,
                next_cursor=next_cursor)


@router.get("/v1/runs/{run_id}", response_model=RunOut,
            responses={202: {"model": RunOut, "description": "Not finished (within `wait`)."}})
async def get_run(run_id: ResourceId, ctx: Ctx, principal: RunsRead, wait: WaitSeconds = 0) -> JSONResponse:
    run = await _wait_for_final(ctx, principal, run_id, wait)
    return _respond(run)


@router.post("/v1/runs/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: ResourceId, ctx: Ctx, principal: RunsWrite) -> RunOut:
    """Cancel a queued or running run; a running sandbox is killed, and the run charged the CPU time
    it used once its worker has measured it (``credits_charged`` is 0 until then). 409
    ``run_finished`` if it ended."""
    with ctx.db.session(write=True) as session:
        run, previous = run_service.cancel_run(session, principal, run_id)
        session.commit()
    if previous == RunStatus.RUNNING:
        ctx.runner.cancel(run_id)
    ctx.notifier.publish(run_id)
    return run_service.to_out(run)


@router.get("/v1/runs/{run_id}/result", response_class=Response,
            responses={200: {"content": {fmt.media_type: {} for fmt in result_formats.FORMATS.values()},
                             "description": "The result table."},
                       307: {"description": "With presigned results on (S3 storage), `arrow` is fetched from "
                                            "the short-lived URL in `Location`; send no credentials there."}})
async def get_result(run_id: ResourceId, ctx: Ctx, principal: RunsRead,
                     format: Literal["arrow", "parquet", "csv", "json"] = "arrow",
                     wait: WaitSeconds = 0) -> Response:
    """The result of a succeeded run; with ``?wait=``, once the run has finished (long-poll): a
    submission followed by this request gets its values in two round trips."""
    run = await _wait_for_final(ctx, principal, run_id, wait)
    if run.status not in FINAL_STATUSES:
        raise RunNotFinished(f"Run {run_id!r} is {run.status}; its result is not ready.", run_status=run.status)
    if run.status != RunStatus.SUCCEEDED:
        raise ResultUnavailable(f"Run {run_id!r} {run.status.replace('_', ' ')}; it has no result.",
                                run_status=run.status)
    _check_retained(run.id, run.result_expired_at)
    return await run_in_threadpool(_result_response, ctx, run, format)


async def _result_or_run(ctx: AppContext, run: RunOut, format: str) -> Response:
    """A submission's answer with ``result=``: the succeeded run's result, else the run."""
    if run.status != RunStatus.SUCCEEDED or run.result_expired_at is not None:
        return _respond(run)
    try:
        response = await run_in_threadpool(_result_response, ctx, run, format)
    except (ResultUnavailable, ResultExpired):
        return _respond(run)  # its id is what the caller needs most; GET .../result says why
    if isinstance(response, RedirectResponse):
        return _respond(run)  # presigned: a POST is not redirected to a GET; the client fetches it from there
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return response


def _check_retained(run_id: str, expired_at: datetime | None) -> None:
    if expired_at is not None:
        raise ResultExpired(f"Run {run_id!r}'s result and log were removed on {expired_at:%Y-%m-%d}, "
                            "as its tier's result retention says.", result_expired_at=expired_at.isoformat())


def _result_response(ctx: AppContext, run: RunOut, format: str) -> Response:
    """A grantee's run of a shared model has its result read as a table of numbers before a byte
    of it leaves (never presigned, never passed through as stored)."""
    run_id, stored_under, shared = run.id, run_service.stored_under(run), run.grant_id is not None
    url = None if shared else result_delivery.presigned_result_url(ctx.storage, ctx.settings, stored_under, format,
                                                                   filename=run_id)
    if url is not None:
        # A presigned URL is a bearer credential of its own: no cache may keep it.
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT,
                                headers={"Cache-Control": "no-store"})
    key = run_service.result_key(stored_under)
    fmt = result_formats.FORMATS[format]
    headers = {"Content-Disposition": f'attachment; filename="{run_id}.{fmt.extension}"'}
    try:
        if format == "arrow" and not shared:
            size = ctx.storage.size(key)
            if size <= SMALL_RESULT_BYTES:  # most results: one read here, not one thread hop per chunk
                return Response(ctx.storage.read_bytes(key), media_type=fmt.media_type, headers=headers)
            return StreamingResponse(ctx.storage.iter_chunks(key), media_type=fmt.media_type,
                                     headers={**headers, "Content-Length": str(size)})
        # Converted while it is sent, chunk by chunk: memory does not grow with the result.
        stored = result_delivery.open_result(ctx.storage, ctx.settings, stored_under, numbers_only=shared)
    except FileNotFoundError:
        with ctx.db.session() as session:
            _check_retained(run_id, run_service.files_removed_at(session, run))
        raise ResultUnavailable(f"Run {run_id!r} succeeded, but its result is no longer stored.",
                                run_status=RunStatus.SUCCEEDED) from None
    except result_delivery.NotATable:
        raise ResultUnavailable(f"Run {run_id!r}'s output is not a table of numbers; it is not served.",
                                run_status=RunStatus.SUCCEEDED) from None
    return StreamingResponse(stored.converted(format), media_type=fmt.media_type, headers=headers)


@router.get("/v1/runs/{run_id}/log", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "FMU log and runner output."}})
def get_log(run_id: ResourceId, ctx: Ctx, session: DbSession, principal: RunsRead) -> Response:
    run = run_service.get_run(session, principal, run_id)
    _check_retained(run.id, run.result_expired_at)
    key = run_service.log_key(run_service.stored_under(run))
    if ctx.storage.exists(key):
        text = ctx.storage.read_bytes(key)
    else:  # none was written (an empty log), or retention reached the run it was served from
        _check_retained(run.id, run_service.files_removed_at(session, run))
        text = b""
    if run.grant_id is not None:
        text = result_delivery.text_lines_only(text)
    return Response(text, media_type="text/plain; charset=utf-8")
