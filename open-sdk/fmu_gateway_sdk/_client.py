"""``FMUGatewayClient`` and its async twin ``AsyncFMUGatewayClient``: configuration, resources and
the ``simulate`` one-liner."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from typing_extensions import Self, Unpack

from fmu_gateway_sdk._base_client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    AsyncRequester,
    SyncRequester,
    resolve_base_url,
)
from fmu_gateway_sdk._retry import RetryPolicy
from fmu_gateway_sdk._run_request import RunOptions, run_options
from fmu_gateway_sdk.auth import AuthMode, resolve_auth
from fmu_gateway_sdk.errors import FMUGatewayError, NotFoundError, RunFailedError
from fmu_gateway_sdk.models import FmuSummary, Run, SweepMethod
from fmu_gateway_sdk.resources import (
    AsyncBilling,
    AsyncFmus,
    AsyncRuns,
    AsyncSweeps,
    Billing,
    FmuRef,
    Fmus,
    Runs,
    Sweeps,
)
from fmu_gateway_sdk.result import SimulationResult
from fmu_gateway_sdk.sweep_result import SweepResult

__all__ = ["AsyncFMUGatewayClient", "FMUGatewayClient", "FmuInput"]

#: What ``simulate`` accepts: a path to a ``.fmu`` file, an FMU id, or an FMU object.
FmuInput = str | os.PathLike[str] | FmuSummary


def local_fmu_path(fmu: FmuInput) -> Path | None:
    """The file to upload when ``fmu`` names one; ``None`` when it is an uploaded FMU (id or object)."""
    if isinstance(fmu, FmuSummary):
        return None
    if isinstance(fmu, os.PathLike):
        return Path(fmu)
    if fmu.lower().endswith(".fmu") or "/" in fmu or os.sep in fmu or Path(fmu).is_file():
        return Path(fmu)
    return None


def _uploaded_ref(fmu: FmuInput) -> FmuRef:
    return fmu if isinstance(fmu, FmuSummary) else os.fspath(fmu)


T = TypeVar("T")


class _ClientConfig:
    def __init__(self, api_key: str | None, base_url: str | None, timeout: float | httpx.Timeout,
                 max_retries: int, auth: httpx.Auth | None, auth_mode: AuthMode) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = resolve_base_url(base_url)
        self.auth = resolve_auth(api_key, auth, auth_mode=auth_mode, base_url=self.base_url)
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max_retries)


class FMUGatewayClient:
    """The FMU Gateway API.

    ``api_key`` defaults to ``$FMU_GATEWAY_API_KEY``, ``base_url`` to ``$FMU_GATEWAY_URL`` or
    ``http://127.0.0.1:8000``. ``timeout`` is how long the client waits for each HTTP response
    (long-polls get their wait on top): in the SDK ``timeout`` always bounds the client's waiting, and
    a run's own wall-clock limit is ``run_timeout`` (:class:`RunOptions`). Failed requests are retried
    up to ``max_retries`` times with backoff. ``auth_mode="token"`` sends the API key only to exchange
    it for short-lived access tokens, which every other request carries and which are renewed before
    they expire. ``auth`` replaces the API key with any ``httpx.Auth`` (see
    :mod:`fmu_gateway_sdk.auth`). Use it as a context manager, or ``close()`` it.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_MAX_RETRIES,
                 auth: httpx.Auth | None = None, auth_mode: AuthMode = "api_key") -> None:
        config = _ClientConfig(api_key, base_url, timeout, max_retries, auth, auth_mode)
        self.base_url = config.base_url
        self.max_retries = max_retries
        self._api = SyncRequester(base_url=config.base_url, auth=config.auth, timeout=timeout, retry=config.retry)
        self.fmus = Fmus(self._api)
        self.runs = Runs(self._api)
        self.billing = Billing(self._api)
        self.sweeps = Sweeps(self._api)

    def simulate(self, fmu: FmuInput, *, timeout: float | None = None,
                 **options: Unpack[RunOptions]) -> SimulationResult:
        """Simulate an FMU and return its result, like ``fmpy.simulate_fmu`` on the server.

        ``fmu`` is a path to a ``.fmu`` file (uploaded unless the server has those bytes already), an
        FMU id, or an FMU object. ``options`` are :class:`RunOptions`: ``start_values``, ``stop_time``,
        ``output``, ``step_size``, ``input``, ... and ``run_timeout``, the run's wall-clock limit.
        Raises :class:`RunFailedError` (with the run and its log) if the run does not succeed.

        ``timeout`` is deprecated here: it still sets the run's wall-clock limit (``run_timeout``), with
        a ``DeprecationWarning``; elsewhere in the SDK ``timeout`` is how long the client waits.
        """
        options = run_options(options, caller="simulate", timeout=timeout)
        # One round trip when the run succeeds within the server's long-poll.
        outcome = self._with_uploaded(fmu, lambda target: self.runs.submit_for_result(target, **options))
        if isinstance(outcome, Run):
            raise RunFailedError(outcome, log=self._log_of(outcome), request_id=outcome.request_id)
        return outcome

    def sweep(self, fmu: FmuInput, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
              method: SweepMethod = "grid", samples: int | None = None, seed: int | None = None,
              progress: bool = True, timeout: float | None = None, **options: Unpack[RunOptions]) -> SweepResult:
        """Run a parameter sweep and return its tables once every child has ended.

        ``fmu`` as for :meth:`simulate`. ``parameters``: for ``grid`` value lists by name, for
        ``list`` a list of start-value dicts, for ``lhs``/``sobol``/``random`` ranges
        (``{"mu": (0.1, 2.0)}``) and ``samples`` draws, reproducible with ``seed``. ``options`` are
        the base run's :class:`RunOptions` (``run_timeout`` is each child's wall-clock limit).
        ``progress`` shows a progress bar on stderr; ``timeout`` bounds how long the client waits
        (:class:`WaitTimeoutError`). A failed child does not raise: see ``result.failed_runs``.
        """
        options = run_options(options, caller="sweep")
        created = self._with_uploaded(fmu, lambda target: self.sweeps.create(
            target, parameters=parameters, method=method, samples=samples, seed=seed, **options))
        return self.sweeps.result(self.sweeps.wait(created, timeout=timeout, progress=progress))

    def _with_uploaded(self, fmu: FmuInput, submit: Callable[[FmuRef], T]) -> T:
        """``submit`` on the uploaded FMU ``fmu`` names. A local file's remembered upload that the
        server no longer has (deleted meanwhile: 404, and the FMU is gone) is forgotten, and the
        file looked up, or uploaded, again, once."""
        path = local_fmu_path(fmu)
        if path is None:
            return submit(_uploaded_ref(fmu))
        target = self.fmus.ensure_uploaded(path)
        try:
            return submit(target)
        except NotFoundError:
            try:
                self.fmus.get(target)
            except NotFoundError:
                self.fmus.known.forget(target)
                return submit(self.fmus.ensure_uploaded(path))
            raise

    def _log_of(self, run: Run) -> str | None:
        try:
            return self.runs.log(run)
        except FMUGatewayError:
            return None

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FMUGatewayClient(base_url={self.base_url!r})"


class AsyncFMUGatewayClient:
    """The FMU Gateway API for asyncio (and trio): the same surface as :class:`FMUGatewayClient`,
    with coroutines; ``list()`` methods are async iterators. Use it as ``async with``, or ``aclose()`` it.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_MAX_RETRIES,
                 auth: httpx.Auth | None = None, auth_mode: AuthMode = "api_key") -> None:
        config = _ClientConfig(api_key, base_url, timeout, max_retries, auth, auth_mode)
        self.base_url = config.base_url
        self.max_retries = max_retries
        self._api = AsyncRequester(base_url=config.base_url, auth=config.auth, timeout=timeout, retry=config.retry)
        self.fmus = AsyncFmus(self._api)
        self.runs = AsyncRuns(self._api)
        self.billing = AsyncBilling(self._api)
        self.sweeps = AsyncSweeps(self._api)

    async def simulate(self, fmu: FmuInput, *, timeout: float | None = None,
                       **options: Unpack[RunOptions]) -> SimulationResult:
        """Simulate an FMU and return its result (see :meth:`FMUGatewayClient.simulate`)."""
        options = run_options(options, caller="simulate", timeout=timeout)
        outcome = await self._with_uploaded(fmu, lambda target: self.runs.submit_for_result(target, **options))
        if isinstance(outcome, Run):
            raise RunFailedError(outcome, log=await self._log_of(outcome), request_id=outcome.request_id)
        return outcome

    async def sweep(self, fmu: FmuInput, *, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                    method: SweepMethod = "grid", samples: int | None = None, seed: int | None = None,
                    progress: bool = True, timeout: float | None = None,
                    **options: Unpack[RunOptions]) -> SweepResult:
        """Run a parameter sweep and return its tables once every child has ended (see
        :meth:`FMUGatewayClient.sweep`)."""
        options = run_options(options, caller="sweep")
        created = await self._with_uploaded(fmu, lambda target: self.sweeps.create(
            target, parameters=parameters, method=method, samples=samples, seed=seed, **options))
        return await self.sweeps.result(await self.sweeps.wait(created, timeout=timeout, progress=progress))

    async def _with_uploaded(self, fmu: FmuInput, submit: Callable[[FmuRef], Awaitable[T]]) -> T:
        """See :meth:`FMUGatewayClient._with_uploaded`."""
        path = local_fmu_path(fmu)
        if path is None:
            return await submit(_uploaded_ref(fmu))
        target = await self.fmus.ensure_uploaded(path)
        try:
            return await submit(target)
        except NotFoundError:
            try:
                await self.fmus.get(target)
            except NotFoundError:
                self.fmus.known.forget(target)
                return await submit(await self.fmus.ensure_uploaded(path))
            raise

    async def _log_of(self, run: Run) -> str | None:
        try:
            return await self.runs.log(run)
        except FMUGatewayError:
            return None

    async def aclose(self) -> None:
        await self._api.aclose()

    async def close(self) -> None:
        """Same as :meth:`aclose`."""
        await self._api.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncFMUGatewayClient(base_url={self.base_url!r})"
