"""Server-Sent Events: ``/v1/runs/{id}/events`` and ``/v1/sweeps/{id}/events``.

A run's stream sends ``status`` whenever its status changes; a sweep's sends ``status`` when the
sweep's status changes and ``progress`` when its counts do. Each ends with an ``end`` event
carrying the final object, then closes. The data of every event is the run or sweep as JSON, as
``GET`` returns it.

The database is the source of truth: a stream re-reads it every ``events_poll_s`` (a worker in
another process changed the run), and wakes at once when this process's workers publish a change.
Each read takes its own short session; nothing holds a connection while the stream waits. A
comment line every ``events_heartbeat_s`` of silence keeps proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.context import AppContext
from app.dispatch.notifier import ANY
from app.models.run import FINAL_STATUSES
from app.routes.deps import Ctx, RunsRead
from app.routes.sweeps import load_sweep
from app.schemas.run import RunOut
from app.services import run_service
from app.services.auth_service import Principal
from app.services.sweep_service import FINAL_SWEEP_STATUSES

router = APIRouter(tags=["events"])

MEDIA_TYPE = "text/event-stream"
# Clients reconnect after this many milliseconds if the connection drops.
RETRY_MS = 1000
# A sweep's stream wakes on every run's change in this process; it re-counts at most this often.
MIN_READ_INTERVAL_S = 0.1
STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
          "description": "Server-Sent Events; every event's data is the object as JSON."}}


@dataclass
class Event:
    name: str
    data: BaseModel


def load_run(ctx: AppContext, principal: Principal, run_id: str) -> RunOut:
    with ctx.db.session() as session:
        return run_service.to_out(run_service.get_run(session, principal, run_id))


def _frame(sequence: int, event: Event) -> bytes:
    return f"id: {sequence}\nevent: {event.name}\ndata: {event.data.model_dump_json()}\n\n".encode()


async def _stream(ctx: AppContext, key: str, read: Callable[[], Awaitable[tuple[list[Event], bool]]],
                  first: tuple[list[Event], bool]) -> AsyncIterator[bytes]:
    """Events from ``read`` (which returns what changed and whether it is the end) until the end."""
    yield f"retry: {RETRY_MS}\n\n".encode()
    sequence = 0
    events, done = first
    last_sent = time.monotonic()
    while True:
        for event in events:
            sequence += 1
            yield _frame(sequence, event)
            last_sent = time.monotonic()
        if done:
            return
        if time.monotonic() - last_sent >= ctx.settings.events_heartbeat_s:
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()
        with ctx.notifier.subscribe(key) as changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), ctx.settings.events_poll_s)
            await asyncio.sleep(MIN_READ_INTERVAL_S if changed.is_set() else 0)
            events, done = await read()


def _response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type=MEDIA_TYPE,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/runs/{run_id}/events", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def run_events(run_id: str, ctx: Ctx, principal: RunsRead) -> StreamingResponse:
    """``status`` on every status change (the current one first), then ``end`` with the final run."""
    last: list[str | None] = [None]

    async def read() -> tuple[list[Event], bool]:
        run = await run_in_threadpool(load_run, ctx, principal, run_id)
        events = [] if run.status == last[0] else [Event("status", run)]
        last[0] = run.status
        final = run.status in FINAL_STATUSES
        return ([*events, Event("end", run)] if final else events), final

    first = await read()  # a missing run is a 404 problem, before the stream starts
    return _response(_stream(ctx, run_id, read, first))


@router.get("/v1/sweeps/{sweep_id}/events", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def sweep_events(sweep_id: str, ctx: Ctx, principal: RunsRead) -> StreamingResponse:
    """``status`` when the sweep's status changes, ``progress`` when its counts change (both sent
    first), then ``end`` with the final sweep."""
    last_status: list[str | None] = [None]
    last_counts: list[object] = [None]

    async def read() -> tuple[list[Event], bool]:
        sweep = await run_in_threadpool(load_sweep, ctx, principal, sweep_id)
        events = []
        if sweep.status != last_status[0]:
            events.append(Event("status", sweep))
        if sweep.counts != last_counts[0]:
            events.append(Event("progress", sweep))
        last_status[0], last_counts[0] = sweep.status, sweep.counts
        final = sweep.status in FINAL_SWEEP_STATUSES
        return ([*events, Event("end", sweep)] if final else events), final

    first = await read()
    return _response(_stream(ctx, ANY, read, first))
