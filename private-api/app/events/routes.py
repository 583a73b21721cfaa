"""Server-Sent Events: ``/v1/runs/{id}/events`` and ``/v1/sweeps/{id}/events``.

A run's stream sends ``status`` whenever its status changes; a sweep's sends ``status`` when the
sweep's status changes and ``progress`` when its counts do. Each ends with an ``end`` event
carrying the final object, then closes. The data of every event is the run or sweep as JSON, as
``GET`` returns it, and every event has an ``id``.

Streams are bounded: a user has at most ``events_max_streams_per_user`` open at once (429
``too_many_streams`` beyond), and the server closes a stream after ``events_max_stream_s`` without
an ``end``. The client reconnects with ``Last-Event-ID``; the new stream numbers its events after
that id and starts from the current state. Every event carries the whole object, so a resumed
stream loses nothing, and ``end`` comes whenever the object is final, however often it reconnects.

The database is the source of truth: a stream re-reads it every ``events_poll_s`` (a worker in
another process changed the run), backing off to ``events_poll_max_s`` while nothing changes, and
wakes at once when this process's workers publish a change. Each read takes its own short session;
nothing holds a connection while the stream waits. A comment line every ``events_heartbeat_s`` of
silence keeps proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from app.auth.dependencies import Ctx, RunsRead
from app.auth.service import Principal
from app.context import AppContext
from app.dispatch.notifier import ANY
from app.events.slots import StreamSlot
from app.kit.params import ResourceId
from app.runs import service as run_service
from app.runs.models import FINAL_STATUSES
from app.runs.schemas import RunOut
from app.sweeps.models import FINAL_SWEEP_STATUSES
from app.sweeps.routes import load_sweep

router = APIRouter(tags=["events"])

MEDIA_TYPE = "text/event-stream"
# Clients reconnect after this many milliseconds if the connection drops or the stream ends early.
RETRY_MS = 1000
# A sweep's stream wakes on every run's change in this process; it re-counts at most this often.
MIN_READ_INTERVAL_S = 0.1
# Event ids are sequence numbers; a Last-Event-ID that is not one we could have sent is ignored.
MAX_EVENT_ID_DIGITS = 15
STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
          "description": "Server-Sent Events; every event's data is the object as JSON."},
    429: {"description": "`too_many_streams`: the user already has the most event streams open at once."}}

LastEventId = Annotated[str | None, Header(
    alias="Last-Event-ID", description="Resume a stream the server ended: the id of the last event received.")]


@dataclass
class Event:
    name: str
    data: BaseModel


Read = Callable[[], Awaitable[tuple[list[Event], bool]]]


class EventStreamResponse(StreamingResponse):
    """Releases its stream slot however the stream ends: at ``end``, at its lifetime, on the
    client's disconnect or on an error."""

    def __init__(self, body: AsyncIterator[bytes], slot: StreamSlot) -> None:
        super().__init__(body, media_type=MEDIA_TYPE,
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _release(self.slot)


async def _release(slot: StreamSlot) -> None:
    # Shielded: a cancelled request (server shutdown) must still give its slot back.
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(slot.release)


def load_run(ctx: AppContext, principal: Principal, run_id: str) -> RunOut:
    with ctx.db.session() as session:
        return run_service.to_out(run_service.get_run(session, principal, run_id))


def resume_after(last_event_id: str | None) -> int:
    """The sequence number to continue after: Last-Event-ID if it is one of ours, else 0."""
    value = (last_event_id or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= MAX_EVENT_ID_DIGITS else 0


def _frame(sequence: int, event: Event) -> bytes:
    return f"id: {sequence}\nevent: {event.name}\ndata: {event.data.model_dump_json()}\n\n".encode()


async def _stream(ctx: AppContext, key: str, read: Read, first: tuple[list[Event], bool],
                  sequence: int) -> AsyncIterator[bytes]:
    """Events from ``read`` (which returns what changed and whether it is the end) until the end
    or the stream's lifetime, numbered after ``sequence``."""
    settings = ctx.settings
    yield f"retry: {RETRY_MS}\n\n".encode()
    events, done = first
    last_sent = started = time.monotonic()
    ends_at = started + settings.events_max_stream_s
    poll_s = settings.events_poll_s
    with ctx.notifier.subscribe(key) as changed:
        next_read = started + poll_s
        while True:
            for event in events:
                sequence += 1
                yield _frame(sequence, event)
                last_sent = time.monotonic()
            if done:
                return
            now = time.monotonic()
            if now >= ends_at:
                yield f": stream lifetime reached; reconnect with Last-Event-ID\nretry: {RETRY_MS}\n\n".encode()
                return
            if now - last_sent >= settings.events_heartbeat_s:
                yield b": heartbeat\n\n"
                last_sent = now
            wake_at = min(next_read, ends_at, last_sent + settings.events_heartbeat_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(0.0, wake_at - now))
            events = []
            if changed.is_set():
                await asyncio.sleep(MIN_READ_INTERVAL_S)  # a burst of changes becomes one read
            elif time.monotonic() < next_read:
                continue  # woke for the heartbeat or the lifetime
            changed.clear()  # before the read: a change during it wakes the next wait
            events, done = await read()
            # Idle streams back off (each read is a query); any change restores the pace.
            poll_s = settings.events_poll_s if events else min(poll_s * 2, settings.events_poll_max_s)
            next_read = time.monotonic() + poll_s


async def _open(ctx: AppContext, principal: Principal, key: str, read: Read,
                last_event_id: str | None) -> EventStreamResponse:
    """Take one of the user's stream slots (429 if none is free), read the current state (a
    missing object is a 404 problem, before the stream starts), then stream."""
    slot = await run_in_threadpool(ctx.stream_slots.acquire, principal.user_id,
                                   ctx.settings.events_max_streams_per_user)
    try:
        first = await read()
    except BaseException:
        await _release(slot)
        raise
    return EventStreamResponse(_stream(ctx, key, read, first, resume_after(last_event_id)), slot)


@router.get("/v1/runs/{run_id}/events", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def run_events(run_id: ResourceId, ctx: Ctx, principal: RunsRead,
                     last_event_id: LastEventId = None) -> StreamingResponse:
    """``status`` on every status change (the current one first), then ``end`` with the final run."""
    last: list[str | None] = [None]

    async def read() -> tuple[list[Event], bool]:
        run = await run_in_threadpool(load_run, ctx, principal, run_id)
        events = [] if run.status == last[0] else [Event("status", run)]
        last[0] = run.status
        final = run.status in FINAL_STATUSES
        return ([*events, Event("end", run)] if final else events), final

    return await _open(ctx, principal, run_id, read, last_event_id)


@router.get("/v1/sweeps/{sweep_id}/events", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def sweep_events(sweep_id: ResourceId, ctx: Ctx, principal: RunsRead,
                       last_event_id: LastEventId = None) -> StreamingResponse:
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

    return await _open(ctx, principal, ANY, read, last_event_id)
