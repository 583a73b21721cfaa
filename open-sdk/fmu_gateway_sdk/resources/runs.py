"""``client.runs``: create (idempotent), get, list, wait, result, log, cancel."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Literal, overload
from urllib.parse import quote

import anyio
import httpx
from typing_extensions import Unpack

from fmu_gateway_sdk._base_client import AsyncRequester, Params, SyncRequester
from fmu_gateway_sdk._run_request import RunOptions, run_body, run_options
from fmu_gateway_sdk.errors import ConflictError, WaitTimeoutError
from fmu_gateway_sdk.models import Quote, ResultFormat, Run, RunStatus, page_from_response
from fmu_gateway_sdk.resources.fmus import FmuRef, fmu_id, fmu_path
from fmu_gateway_sdk.result import SimulationResult

#: A run: its id or the object itself.
RunRef = str | Run

PAGE_SIZE = 100
#: Seconds one long-poll request waits on the server (below its cap of 60 s).
LONG_POLL_S = 30.0
# A server that answers a long-poll early is not polled faster than this.
MIN_POLL_INTERVAL_S = 0.5


def run_id(run: RunRef) -> str:
    return run.id if isinstance(run, Run) else str(run)


def run_path(run: RunRef, suffix: str = "") -> str:
    return f"/v1/runs/{quote(run_id(run), safe='')}{suffix}"


#: ``?dry_run=true`` on a submission: validate and price it, place and hold nothing.
DRY_RUN_PARAMS = {"dry_run": "true"}
#: A submission that waits for its run and, if it succeeds in time, is answered with its result.
RESULT_PARAMS: Params = {"wait": LONG_POLL_S, "result": "arrow"}
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.file"


def _answered_with_result(response: httpx.Response) -> str | None:
    """The run's id when a ``RESULT_PARAMS`` submission was answered with its result (a server that
    does not know ``result=`` answers with the run, as without it)."""
    if not response.headers.get("content-type", "").startswith(ARROW_MEDIA_TYPE):
        return None
    return response.headers["location"].rsplit("/", 1)[-1]


class _WaitClock:
    """How long the next long-poll may wait, and whether the caller's patience ran out."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def next_wait(self) -> float:
        if self.deadline is None:
            return LONG_POLL_S
        return max(0.0, min(LONG_POLL_S, self.deadline - time.monotonic()))

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    @staticmethod
    def pause(wait: float, started: float) -> float:
        """Seconds to sleep when the server answered a long-poll well before ``wait`` ran out."""
        return max(0.0, min(wait, MIN_POLL_INTERVAL_S) - (time.monotonic() - started))


class Runs:
    def __init__(self, api: SyncRequester) -> None:
        self._api = api

    @overload
    def create(self, fmu: FmuRef, *, wait: float = ..., idempotency_key: str | None = ...,
               timeout: float | None = ..., dry_run: Literal[False] = ..., **options: Unpack[RunOptions]) -> Run: ...

    @overload
    def create(self, fmu: FmuRef, *, wait: float = ..., idempotency_key: str | None = ...,
               timeout: float | None = ..., dry_run: Literal[True], **options: Unpack[RunOptions]) -> Quote: ...

    def create(self, fmu: FmuRef, *, wait: float = 0, idempotency_key: str | None = None,
               timeout: float | None = None, dry_run: bool = False, **options: Unpack[RunOptions]) -> Run | Quote:
        """Submit a simulation of an uploaded FMU; ``options`` are :class:`RunOptions`
        (``fmpy.simulate_fmu``'s keywords, and ``run_timeout``).

        ``wait`` seconds (long-poll) lets a short run come back finished. Retries reuse one
        ``Idempotency-Key`` (``idempotency_key``, or one made for this call), so a retried submission
        never creates or charges a second run. ``timeout`` is the deprecated spelling of ``run_timeout``.
        ``dry_run=True`` places nothing: the server validates the run and returns its :class:`Quote`
        (what it would hold, the balance, whether it suffices).
        """
        body = run_body(run_options(options, caller="runs.create", timeout=timeout))
        if dry_run:
            return Quote.from_response(self._api.request("POST", f"{fmu_path(fmu)}/runs", params=DRY_RUN_PARAMS,
                                                         json=body, idempotency_key=idempotency_key))
        # The POST itself never long-polls: a retry then finds the first attempt answered (its
        # response is replayed) instead of still running; the wait is a separate, safe GET.
        created = Run.from_response(self._api.request("POST", f"{fmu_path(fmu)}/runs", json=body,
                                                      idempotency_key=idempotency_key))
        if wait <= 0 or created.finished:
            return created
        return Run.from_response(self._api.request(
            "GET", run_path(created), params={"wait": wait}, timeout=self._api.long_poll_timeout(wait)))

    def get(self, run: RunRef) -> Run:
        return Run.from_response(self._api.request("GET", run_path(run)))

    def list(self, *, status: RunStatus | None = None, fmu: FmuRef | None = None,
             page_size: int = PAGE_SIZE) -> Iterator[Run]:
        """Your runs, newest first, optionally of one status or one FMU; pages are fetched as you iterate."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Run, self._api.request("GET", "/v1/runs", params={
                "limit": page_size, "cursor": cursor, "status": status,
                "fmu_id": fmu_id(fmu) if fmu is not None else None}))
            yield from items
            if cursor is None:
                return

    def wait(self, run: RunRef, *, timeout: float | None = None) -> Run:
        """Block until the run has finished (succeeded, failed, timed out or cancelled) and return it.

        Raises :class:`WaitTimeoutError` if ``timeout`` seconds pass first (how long the client waits;
        the run's own limit is ``run_timeout`` at creation); the run goes on regardless.
        """
        clock = _WaitClock(timeout)
        while True:
            wait, started = clock.next_wait(), time.monotonic()
            current = Run.from_response(self._api.request(
                "GET", run_path(run), params={"wait": wait or None}, timeout=self._api.long_poll_timeout(wait)))
            if current.finished:
                return current
            if clock.expired():
                raise WaitTimeoutError(current, clock.timeout or 0.0)
            time.sleep(clock.pause(wait, started))

    def result(self, run: RunRef) -> SimulationResult:
        """The result of a succeeded run (``ConflictError`` if it has not finished or has no result)."""
        current = run if isinstance(run, Run) and run.finished else self.get(run)
        return SimulationResult(current, self.download_result(current, format="arrow"))

    def download_result(self, run: RunRef, format: ResultFormat = "arrow", *, wait: float = 0) -> bytes:
        """The result file as the server sends it: ``arrow`` (IPC file), ``parquet``, ``csv`` or ``json``.

        ``wait``: seconds the server may wait for the run to finish first (long-poll); a run still
        going then is ``ConflictError`` ``run_not_finished``, one without a result ``result_unavailable``."""
        # The gateway may answer 307 to a presigned URL of its storage.
        return self._api.request("GET", run_path(run, "/result"), params={"format": format, "wait": wait or None},
                                 timeout=self._api.long_poll_timeout(wait) if wait else None,
                                 follow_redirects=True).content

    def submit_for_result(self, fmu: FmuRef, **options: Unpack[RunOptions]) -> SimulationResult | Run:
        """Submit a run and wait for its result, in one long-poll request when the run succeeds within
        it (``?result=arrow``): the result (whose ``.run`` is read when first used), or the finished
        run when it has no result. Retries reuse one ``Idempotency-Key``: one run, however many."""
        response = self._api.request("POST", f"{fmu_path(fmu)}/runs", params=RESULT_PARAMS,
                                     json=run_body(run_options(options, caller="runs.submit_for_result")),
                                     timeout=self._api.long_poll_timeout(LONG_POLL_S))
        if (run_id_ := _answered_with_result(response)) is not None:
            return SimulationResult(run_id_, response.content, final_run=lambda: self.get(run_id_))
        run = Run.from_response(response)
        return run if run.finished and not run.succeeded else self.finished_result(run)

    def finished_result(self, run: Run) -> SimulationResult | Run:
        """Wait for a submitted run and fetch its result in the same long-poll requests: the result
        (whose ``.run`` is read when first used), or the finished run when it has no result."""
        while True:
            try:
                data = self.download_result(run, wait=LONG_POLL_S)
            except ConflictError as error:
                if error.code == "run_not_finished":
                    continue  # the server waited its longest: ask again
                return self.get(run)
            return SimulationResult(run, data, final_run=lambda: self.get(run))

    def log(self, run: RunRef) -> str:
        """The FMU's log messages and the runner's output."""
        return self._api.request("GET", run_path(run, "/log")).text

    def cancel(self, run: RunRef) -> Run:
        """Stop a queued or running run (``ConflictError`` with code ``run_finished`` if it had finished)."""
        return Run.from_response(self._api.request("POST", run_path(run, "/cancel")))


class AsyncRuns:
    def __init__(self, api: AsyncRequester) -> None:
        self._api = api

    @overload
    async def create(self, fmu: FmuRef, *, wait: float = ..., idempotency_key: str | None = ...,
                     timeout: float | None = ..., dry_run: Literal[False] = ...,
                     **options: Unpack[RunOptions]) -> Run: ...

    @overload
    async def create(self, fmu: FmuRef, *, wait: float = ..., idempotency_key: str | None = ...,
                     timeout: float | None = ..., dry_run: Literal[True], **options: Unpack[RunOptions]) -> Quote: ...

    async def create(self, fmu: FmuRef, *, wait: float = 0, idempotency_key: str | None = None,
                     timeout: float | None = None, dry_run: bool = False,
                     **options: Unpack[RunOptions]) -> Run | Quote:
        """Submit a simulation of an uploaded FMU, or with ``dry_run=True`` only quote it (see
        :meth:`Runs.create`)."""
        body = run_body(run_options(options, caller="runs.create", timeout=timeout))
        if dry_run:
            return Quote.from_response(await self._api.request(
                "POST", f"{fmu_path(fmu)}/runs", params=DRY_RUN_PARAMS, json=body, idempotency_key=idempotency_key))
        created = Run.from_response(await self._api.request("POST", f"{fmu_path(fmu)}/runs", json=body,
                                                            idempotency_key=idempotency_key))
        if wait <= 0 or created.finished:
            return created
        return Run.from_response(await self._api.request(
            "GET", run_path(created), params={"wait": wait}, timeout=self._api.long_poll_timeout(wait)))

    async def get(self, run: RunRef) -> Run:
        return Run.from_response(await self._api.request("GET", run_path(run)))

    async def list(self, *, status: RunStatus | None = None, fmu: FmuRef | None = None,
                   page_size: int = PAGE_SIZE) -> AsyncIterator[Run]:
        """Your runs, newest first, optionally of one status or one FMU (``async for``)."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Run, await self._api.request("GET", "/v1/runs", params={
                "limit": page_size, "cursor": cursor, "status": status,
                "fmu_id": fmu_id(fmu) if fmu is not None else None}))
            for item in items:
                yield item
            if cursor is None:
                return

    async def wait(self, run: RunRef, *, timeout: float | None = None) -> Run:
        """Wait until the run has finished (succeeded, failed, timed out or cancelled) and return it.

        Raises :class:`WaitTimeoutError` if ``timeout`` seconds pass first; the run goes on regardless.
        """
        clock = _WaitClock(timeout)
        while True:
            wait, started = clock.next_wait(), time.monotonic()
            current = Run.from_response(await self._api.request(
                "GET", run_path(run), params={"wait": wait or None}, timeout=self._api.long_poll_timeout(wait)))
            if current.finished:
                return current
            if clock.expired():
                raise WaitTimeoutError(current, clock.timeout or 0.0)
            await anyio.sleep(clock.pause(wait, started))

    async def result(self, run: RunRef) -> SimulationResult:
        """The result of a succeeded run (``ConflictError`` if it has not finished or has no result)."""
        current = run if isinstance(run, Run) and run.finished else await self.get(run)
        return SimulationResult(current, await self.download_result(current, format="arrow"))

    async def download_result(self, run: RunRef, format: ResultFormat = "arrow", *, wait: float = 0) -> bytes:
        """See :meth:`Runs.download_result`."""
        return (await self._api.request(
            "GET", run_path(run, "/result"), params={"format": format, "wait": wait or None},
            timeout=self._api.long_poll_timeout(wait) if wait else None, follow_redirects=True)).content

    async def submit_for_result(self, fmu: FmuRef, **options: Unpack[RunOptions]) -> SimulationResult | Run:
        """See :meth:`Runs.submit_for_result`; the run's record, if needed, is read right away."""
        response = await self._api.request("POST", f"{fmu_path(fmu)}/runs", params=RESULT_PARAMS,
                                           json=run_body(run_options(options, caller="runs.submit_for_result")),
                                           timeout=self._api.long_poll_timeout(LONG_POLL_S))
        if (run_id_ := _answered_with_result(response)) is not None:
            return SimulationResult(await self.get(run_id_), response.content)
        run = Run.from_response(response)
        return run if run.finished and not run.succeeded else await self.finished_result(run)

    async def finished_result(self, run: Run) -> SimulationResult | Run:
        """See :meth:`Runs.finished_result`; here the finished run is read right after its result."""
        while True:
            try:
                data = await self.download_result(run, wait=LONG_POLL_S)
            except ConflictError as error:
                if error.code == "run_not_finished":
                    continue
                return await self.get(run)
            return SimulationResult(await self.get(run), data)

    async def log(self, run: RunRef) -> str:
        """The FMU's log messages and the runner's output."""
        return (await self._api.request("GET", run_path(run, "/log"))).text

    async def cancel(self, run: RunRef) -> Run:
        """Stop a queued or running run (``ConflictError`` with code ``run_finished`` if it had finished)."""
        return Run.from_response(await self._api.request("POST", run_path(run, "/cancel")))
