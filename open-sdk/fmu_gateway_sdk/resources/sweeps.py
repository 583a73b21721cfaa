"""``client.sweeps``: create (idempotent), get, list, runs, wait (with a progress bar), result,
summary, cancel.

``wait`` follows the sweep's Server-Sent Events (``/v1/sweeps/{id}/events``); if the stream
cannot be opened or breaks, it polls ``GET /v1/sweeps/{id}`` instead, so it works through proxies
that buffer streams. The server ends a stream after a maximum lifetime; ``events`` then reconnects
with ``Last-Event-ID`` and carries on until ``end``. With too many streams open (429
``too_many_streams``) ``wait`` polls until the server's ``Retry-After`` has passed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal, overload
from urllib.parse import quote

import anyio
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typing_extensions import Unpack

from fmu_gateway_sdk._base_client import AsyncRequester, SyncRequester
from fmu_gateway_sdk._run_request import RunOptions, run_body, run_options, start_values_json
from fmu_gateway_sdk.errors import APIConnectionError, NotFoundError, RateLimitError, WaitTimeoutError
from fmu_gateway_sdk.models import Quote, Sweep, SweepMethod, SweepRun, TableFormat, page_from_response
from fmu_gateway_sdk.resources.fmus import FmuRef, fmu_id, fmu_path
from fmu_gateway_sdk.resources.runs import DRY_RUN_PARAMS
from fmu_gateway_sdk.sweep_result import SweepResult, arrow_to_pandas

#: A sweep: its id or the object itself.
SweepRef = str | Sweep

PAGE_SIZE = 100
RUNS_PAGE_SIZE = 1000
# The server sends a heartbeat at least every 15 s; silence for longer means the stream is dead.
STREAM_READ_TIMEOUT_S = 45.0
POLL_INTERVAL_S = 1.0
# Waits between a stream the server ended and the next: its ``retry`` hint, within these bounds.
DEFAULT_RECONNECT_S = 1.0
MAX_RECONNECT_S = 30.0

def sweep_id(sweep: SweepRef) -> str:
    return sweep.id if isinstance(sweep, Sweep) else str(sweep)


def sweep_path(sweep: SweepRef, suffix: str = "") -> str:
    return f"/v1/sweeps/{quote(sweep_id(sweep), safe='')}{suffix}"


def sweep_body(*, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]], method: SweepMethod,
               samples: int | None, seed: int | None, options: RunOptions) -> dict[str, Any]:
    """The body of ``POST /v1/fmus/{id}/sweeps``: the base run's settings, the space and its sampling."""
    body = run_body(options)
    if isinstance(parameters, Mapping):
        space: Any = {str(k): _space_entry(v) for k, v in parameters.items()}
    else:
        space = [start_values_json(sample) for sample in parameters]
    body.update(method=method, parameters=space)
    if samples is not None:
        body["samples"] = int(samples)
    if seed is not None:
        body["seed"] = int(seed)
    return body


def _space_entry(value: Any) -> Any:
    """A grid's values (any sequence, NumPy arrays too) or a range: ``(min, max)`` or a dict."""
    if isinstance(value, Mapping):
        return {"min": _plain(value["min"]), "max": _plain(value["max"])}
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, tuple) and len(value) == 2:
        return {"min": _plain(value[0]), "max": _plain(value[1])}
    return [_plain(v) for v in value]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, bool | int | float | str):
        return value.item()
    return value


class _EventParser:
    """Server-Sent Events from lines: ``(event, data)`` once a blank line ends an event. Keeps the
    last event id and the server's ``retry`` hint across connections, to resume with them."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.data: list[str] = []
        self.last_id: str | None = None
        self.retry_s = DEFAULT_RECONNECT_S

    def reconnecting(self) -> float:
        """Forget a half-received event (as EventSource does); the seconds to wait first."""
        self.name, self.data = None, []
        return self.retry_s

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line == "":
            if not self.data:
                self.name = None
                return None
            event = (self.name or "message", json.loads("\n".join(self.data)))
            self.name, self.data = None, []
            return event
        if line.startswith(":"):
            return None  # heartbeat comment
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self.name = value
        elif field == "data":
            self.data.append(value)
        elif field == "id" and "\0" not in value:
            self.last_id = value
        elif field == "retry" and value.isdigit():
            self.retry_s = min(int(value) / 1000, MAX_RECONNECT_S)
        return None


class _ProgressBar:
    """A rich progress bar on stderr: children final out of the total, by status."""

    def __init__(self, enabled: bool) -> None:
        self._progress = (Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                   console=Console(stderr=True), transient=False)
                          if enabled else None)
        self._task: Any = None

    def __enter__(self) -> _ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, sweep: Sweep) -> None:
        if self._progress is None:
            return
        counts = sweep.counts
        failed = counts.failed + counts.timed_out
        detail = f"{counts.running} running" + (f", {failed} failed" if failed else "")
        if self._task is None:
            self._task = self._progress.add_task(f"sweep {sweep.id}", total=sweep.total, detail=detail)
        self._progress.update(self._task, completed=counts.finished, detail=detail)


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def read_timeout(self) -> float:
        if self.at is None:
            return STREAM_READ_TIMEOUT_S
        return max(0.1, min(STREAM_READ_TIMEOUT_S, self.at - time.monotonic()))

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


def _stream_again_at(exc: RateLimitError) -> float:
    """After 429 (``too_many_streams``: the user's other streams hold every slot): poll until then."""
    return time.monotonic() + min(exc.retry_after or POLL_INTERVAL_S, MAX_RECONNECT_S)


class Sweeps:
    def __init__(self, api: SyncRequester) -> None:
        self._api = api

    @overload
    def create(self, fmu: FmuRef, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
               method: SweepMethod = ..., samples: int | None = ..., seed: int | None = ...,
               idempotency_key: str | None = ..., timeout: float | None = ..., dry_run: Literal[False] = ...,
               **options: Unpack[RunOptions]) -> Sweep: ...

    @overload
    def create(self, fmu: FmuRef, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
               method: SweepMethod = ..., samples: int | None = ..., seed: int | None = ...,
               idempotency_key: str | None = ..., timeout: float | None = ..., dry_run: Literal[True],
               **options: Unpack[RunOptions]) -> Quote: ...

    def create(self, fmu: FmuRef, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
               method: SweepMethod = "grid", samples: int | None = None, seed: int | None = None,
               idempotency_key: str | None = None, timeout: float | None = None, dry_run: bool = False,
               **options: Unpack[RunOptions]) -> Sweep | Quote:
        """Submit a sweep of an uploaded FMU: one child run per sample; ``options`` are the base run's
        :class:`RunOptions` (``run_timeout`` is each child's limit). ``parameters``: for ``grid`` value
        lists by name (``{"mu": [0.5, 1, 2]}``), for ``list`` a list of start-value dicts, for ``lhs``/
        ``sobol``/``random`` ranges (``{"mu": (0.1, 2.0)}`` or ``{"mu": {"min": 0.1, "max": 2.0}}``)
        and ``samples``. Retries reuse one ``Idempotency-Key``, so a retry never creates a second sweep.
        ``timeout`` is the deprecated spelling of ``run_timeout``. ``dry_run=True`` places nothing: the
        server validates the sweep and returns its :class:`Quote` (``runs`` is the number of children)."""
        body = sweep_body(parameters=parameters, method=method, samples=samples, seed=seed,
                          options=run_options(options, caller="sweeps.create", timeout=timeout))
        response = self._api.request("POST", f"{fmu_path(fmu)}/sweeps", params=DRY_RUN_PARAMS if dry_run else None,
                                     json=body, idempotency_key=idempotency_key)
        return Quote.from_response(response) if dry_run else Sweep.from_response(response)

    def get(self, sweep: SweepRef) -> Sweep:
        return Sweep.from_response(self._api.request("GET", sweep_path(sweep)))

    def list(self, *, fmu: FmuRef | None = None, page_size: int = PAGE_SIZE) -> Iterator[Sweep]:
        """Your sweeps, newest first; pages are fetched as you iterate."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Sweep, self._api.request("GET", "/v1/sweeps", params={
                "limit": page_size, "cursor": cursor, "fmu_id": fmu_id(fmu) if fmu is not None else None}))
            yield from items
            if cursor is None:
                return

    def runs(self, sweep: SweepRef, *, page_size: int = RUNS_PAGE_SIZE) -> Iterator[SweepRun]:
        """The child runs in sweep_index order, each with its ``parameters``."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(SweepRun, self._api.request(
                "GET", sweep_path(sweep, "/runs"), params={"limit": page_size, "cursor": cursor}))
            yield from items
            if cursor is None:
                return

    def events(self, sweep: SweepRef, *, read_timeout: float | None = STREAM_READ_TIMEOUT_S
               ) -> Iterator[tuple[str, Sweep]]:
        """The sweep's Server-Sent Events as ``(event, sweep)``: ``status``, ``progress``, then ``end``.
        A stream the server ends before ``end`` is resumed with ``Last-Event-ID``."""
        parser = _EventParser()
        while True:
            for line in self._api.stream_lines(sweep_path(sweep, "/events"), read_timeout=read_timeout,
                                               last_event_id=parser.last_id):
                event = parser.feed(line)
                if event is not None:
                    yield event[0], Sweep.model_validate(event[1])
                    if event[0] == "end":
                        return
            time.sleep(parser.reconnecting())

    def wait(self, sweep: SweepRef, *, timeout: float | None = None, progress: bool = False) -> Sweep:
        """Block until every child is final (or the sweep was cancelled) and return the sweep; with
        ``progress`` a progress bar on stderr. Raises :class:`WaitTimeoutError` once the client has
        waited ``timeout`` seconds; the sweep goes on."""
        deadline = _Deadline(timeout)
        with _ProgressBar(progress) as bar:
            current = sweep if isinstance(sweep, Sweep) else self.get(sweep)
            bar.update(current)
            stream_after = 0.0  # when to try the event stream (again)
            while not current.finished:
                if deadline.expired():
                    raise WaitTimeoutError(current, timeout or 0.0)
                if time.monotonic() >= stream_after:
                    try:
                        for _, seen in self.events(current.id, read_timeout=deadline.read_timeout()):
                            current = seen
                            bar.update(current)
                            if current.finished or deadline.expired():
                                break
                        continue
                    except NotFoundError:
                        stream_after = math.inf  # no event stream here (an older server); GET says if it is gone
                    except RateLimitError as exc:
                        stream_after = _stream_again_at(exc)
                    except (httpx.TransportError, APIConnectionError):
                        pass  # the stream broke or went quiet: one poll, then a new stream
                else:
                    time.sleep(POLL_INTERVAL_S)
                current = self.get(current)
                bar.update(current)
            return current

    def download_result(self, sweep: SweepRef, format: TableFormat = "arrow") -> bytes:
        """The long table (sweep_index, parameters, time series): ``arrow``, ``parquet`` or ``csv``."""
        return self._api.request("GET", sweep_path(sweep, "/result"), params={"format": format}).content

    def download_summary(self, sweep: SweepRef, format: str = "arrow") -> bytes:
        """One row per child (``arrow``, ``parquet``, ``csv`` or ``json``)."""
        return self._api.request("GET", sweep_path(sweep, "/summary"), params={"format": format}).content

    def result(self, sweep: SweepRef) -> SweepResult:
        """A finished sweep with its tables (``ConflictError`` ``sweep_not_finished`` before)."""
        current = sweep if isinstance(sweep, Sweep) and sweep.finished else self.get(sweep)
        return SweepResult(current, self.download_result(current), self.download_summary(current),
                           list(self.runs(current)))

    def summary(self, sweep: SweepRef) -> Any:
        """The summary as a pandas DataFrame (needs pandas and pyarrow)."""
        return arrow_to_pandas(self.download_summary(sweep))

    def cancel(self, sweep: SweepRef) -> Sweep:
        """Cancel every unfinished child (``ConflictError`` ``sweep_finished`` if none was left)."""
        return Sweep.from_response(self._api.request("POST", sweep_path(sweep, "/cancel")))


class AsyncSweeps:
    def __init__(self, api: AsyncRequester) -> None:
        self._api = api

    @overload
    async def create(self, fmu: FmuRef, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                     method: SweepMethod = ..., samples: int | None = ..., seed: int | None = ...,
                     idempotency_key: str | None = ..., timeout: float | None = ..., dry_run: Literal[False] = ...,
                     **options: Unpack[RunOptions]) -> Sweep: ...

    @overload
    async def create(self, fmu: FmuRef, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                     method: SweepMethod = ..., samples: int | None = ..., seed: int | None = ...,
                     idempotency_key: str | None = ..., timeout: float | None = ..., dry_run: Literal[True],
                     **options: Unpack[RunOptions]) -> Quote: ...

    async def create(self, fmu: FmuRef, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                     method: SweepMethod = "grid", samples: int | None = None, seed: int | None = None,
                     idempotency_key: str | None = None, timeout: float | None = None, dry_run: bool = False,
                     **options: Unpack[RunOptions]) -> Sweep | Quote:
        """Submit a sweep of an uploaded FMU, or with ``dry_run=True`` only quote it (see
        :meth:`Sweeps.create`)."""
        body = sweep_body(parameters=parameters, method=method, samples=samples, seed=seed,
                          options=run_options(options, caller="sweeps.create", timeout=timeout))
        response = await self._api.request("POST", f"{fmu_path(fmu)}/sweeps",
                                           params=DRY_RUN_PARAMS if dry_run else None, json=body,
                                           idempotency_key=idempotency_key)
        return Quote.from_response(response) if dry_run else Sweep.from_response(response)

    async def get(self, sweep: SweepRef) -> Sweep:
        return Sweep.from_response(await self._api.request("GET", sweep_path(sweep)))

    async def list(self, *, fmu: FmuRef | None = None, page_size: int = PAGE_SIZE) -> AsyncIterator[Sweep]:
        """Your sweeps, newest first (``async for``)."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Sweep, await self._api.request("GET", "/v1/sweeps", params={
                "limit": page_size, "cursor": cursor, "fmu_id": fmu_id(fmu) if fmu is not None else None}))
            for item in items:
                yield item
            if cursor is None:
                return

    async def runs(self, sweep: SweepRef, *, page_size: int = RUNS_PAGE_SIZE) -> AsyncIterator[SweepRun]:
        """The child runs in sweep_index order (``async for``)."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(SweepRun, await self._api.request(
                "GET", sweep_path(sweep, "/runs"), params={"limit": page_size, "cursor": cursor}))
            for item in items:
                yield item
            if cursor is None:
                return

    async def events(self, sweep: SweepRef, *, read_timeout: float | None = STREAM_READ_TIMEOUT_S
                     ) -> AsyncIterator[tuple[str, Sweep]]:
        """The sweep's Server-Sent Events (see :meth:`Sweeps.events`)."""
        parser = _EventParser()
        while True:
            async for line in self._api.stream_lines(sweep_path(sweep, "/events"), read_timeout=read_timeout,
                                                     last_event_id=parser.last_id):
                event = parser.feed(line)
                if event is not None:
                    yield event[0], Sweep.model_validate(event[1])
                    if event[0] == "end":
                        return
            await anyio.sleep(parser.reconnecting())

    async def wait(self, sweep: SweepRef, *, timeout: float | None = None, progress: bool = False) -> Sweep:
        """Wait until every child is final (or the sweep was cancelled); see :meth:`Sweeps.wait`."""
        deadline = _Deadline(timeout)
        with _ProgressBar(progress) as bar:
            current = sweep if isinstance(sweep, Sweep) else await self.get(sweep)
            bar.update(current)
            stream_after = 0.0
            while not current.finished:
                if deadline.expired():
                    raise WaitTimeoutError(current, timeout or 0.0)
                if time.monotonic() >= stream_after:
                    try:
                        async for _, seen in self.events(current.id, read_timeout=deadline.read_timeout()):
                            current = seen
                            bar.update(current)
                            if current.finished or deadline.expired():
                                break
                        continue
                    except NotFoundError:
                        stream_after = math.inf
                    except RateLimitError as exc:
                        stream_after = _stream_again_at(exc)
                    except (httpx.TransportError, APIConnectionError):
                        pass
                else:
                    await anyio.sleep(POLL_INTERVAL_S)
                current = await self.get(current)
                bar.update(current)
            return current

    async def download_result(self, sweep: SweepRef, format: TableFormat = "arrow") -> bytes:
        """The long table (sweep_index, parameters, time series): ``arrow``, ``parquet`` or ``csv``."""
        return (await self._api.request("GET", sweep_path(sweep, "/result"), params={"format": format})).content

    async def download_summary(self, sweep: SweepRef, format: str = "arrow") -> bytes:
        """One row per child (``arrow``, ``parquet``, ``csv`` or ``json``)."""
        return (await self._api.request("GET", sweep_path(sweep, "/summary"), params={"format": format})).content

    async def result(self, sweep: SweepRef) -> SweepResult:
        """A finished sweep with its tables (``ConflictError`` ``sweep_not_finished`` before)."""
        current = sweep if isinstance(sweep, Sweep) and sweep.finished else await self.get(sweep)
        return SweepResult(current, await self.download_result(current), await self.download_summary(current),
                           [run async for run in self.runs(current)])

    async def summary(self, sweep: SweepRef) -> Any:
        """The summary as a pandas DataFrame (needs pandas and pyarrow)."""
        return arrow_to_pandas(await self.download_summary(sweep))

    async def cancel(self, sweep: SweepRef) -> Sweep:
        """Cancel every unfinished child (``ConflictError`` ``sweep_finished`` if none was left)."""
        return Sweep.from_response(await self._api.request("POST", sweep_path(sweep, "/cancel")))

