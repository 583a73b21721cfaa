"""Every error the SDK raises: one class per kind of failure, each carrying the server's problem details.

The server answers errors as RFC 9457 ``application/problem+json`` with a stable ``code`` and the
``request_id`` to quote in a support request; :func:`error_from_response` turns such a response into
the matching :class:`APIError` subclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from fmu_gateway_sdk.models import Run, Sweep

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "ConflictError",
    "FMUGatewayError",
    "InsufficientCreditsError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RunFailedError",
    "ValidationError",
    "WaitTimeoutError",
    "error_from_response",
]


class FMUGatewayError(Exception):
    """Base class of every error raised by ``fmu_gateway_sdk``."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 detail: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: HTTP status of the response that reported the error (``None`` when there was none).
        self.status = status
        #: Stable machine-readable code, e.g. ``unknown_variable`` or ``insufficient_credits``.
        self.code = code
        #: Human-readable explanation.
        self.detail = detail if detail is not None else message
        #: The server's ``X-Request-ID``: quote it when reporting a problem.
        self.request_id = request_id


class APIConnectionError(FMUGatewayError):
    """The server could not be reached, or the connection broke, after every retry."""

    def __init__(self, message: str, *, code: str = "connection_error") -> None:
        super().__init__(message, code=code)


class APITimeoutError(APIConnectionError):
    """A request timed out after every retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


class APIError(FMUGatewayError):
    """The server answered with an error status. Subclasses refine it by status; this class itself
    covers the rest (400 ``malformed_upload``, 413 ``payload_too_large``, 5xx, ...)."""

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        self.response = response
        #: The whole problem document, including extension members such as ``variable``.
        self.problem = problem
        self.title = str(problem.get("title") or response.reason_phrase or "Error")
        code = problem.get("code")
        request_id = problem.get("request_id") or response.headers.get("x-request-id")
        detail = str(problem.get("detail") or self.title)
        super().__init__(
            f"{response.status_code} {self.title}: {detail}",
            status=response.status_code,
            code=str(code) if code is not None else None,
            detail=detail,
            request_id=str(request_id) if request_id is not None else None,
        )

    def __str__(self) -> str:
        extras = [f"code={self.code}"] if self.code else []
        if self.request_id:
            extras.append(f"request_id={self.request_id}")
        return f"{self.message} ({', '.join(extras)})" if extras else self.message


class AuthenticationError(APIError):
    """401: no API key, or an unknown, malformed or revoked one."""


class PermissionDeniedError(APIError):
    """403: the API key lacks the scope this call needs (``insufficient_scope``)."""

    @property
    def scope(self) -> str | None:
        value = self.problem.get("scope")
        return str(value) if value is not None else None


class NotFoundError(APIError):
    """404: no such resource, or it belongs to someone else."""


class ConflictError(APIError):
    """409: the resource is in the wrong state, e.g. ``run_not_finished``, ``result_unavailable``,
    ``run_finished``."""


class InsufficientCreditsError(APIError):
    """402: the balance cannot pay for this run."""

    @property
    def required(self) -> int | None:
        value = self.problem.get("required")
        return int(value) if value is not None else None


class ValidationError(APIError):
    """422: the request does not fit the FMU or the API (``unknown_variable``, ``invalid_value``,
    ``invalid_time_range``, ``validation_error``, ``idempotency_key_reused``, ...)."""

    @property
    def variable(self) -> str | None:
        """The offending model variable, when the problem is about one."""
        value = self.problem.get("variable")
        return str(value) if value is not None else None

    @property
    def field(self) -> str | None:
        """The offending request field, e.g. ``stop_time`` or ``start_values.mu``."""
        value = self.problem.get("field")
        if value is not None:
            return str(value)
        errors = self.problem.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            parts = [str(p) for p in errors[0].get("loc", []) if p not in ("body", "query", "path")]
            return ".".join(parts) or None
        return None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every field error of a ``validation_error`` (``loc``, ``msg``, ``type``)."""
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class RateLimitError(APIError):
    """429: too many requests with this API key; retry after :attr:`retry_after` seconds."""

    @property
    def retry_after(self) -> float | None:
        from fmu_gateway_sdk._retry import parse_retry_after

        header = parse_retry_after(self.response.headers)
        if header is not None:
            return header
        value = self.problem.get("retry_after")
        return float(value) if value is not None else None

    @property
    def limit(self) -> int | None:
        return _int_header(self.response, "ratelimit-limit")

    @property
    def remaining(self) -> int | None:
        return _int_header(self.response, "ratelimit-remaining")

    @property
    def reset(self) -> int | None:
        return _int_header(self.response, "ratelimit-reset")


class RunFailedError(FMUGatewayError):
    """The run finished without a result: the model failed, it timed out, or it was cancelled.

    :attr:`run` is the final run, :attr:`code` its error code (``model_error``, ``timed_out``, ...) and
    :attr:`log` the FMU's log when it could be fetched.
    """

    def __init__(self, run: Run, *, log: str | None = None, request_id: str | None = None) -> None:
        self.run = run
        self.log = log
        code = run.error.code if run.error else run.status
        detail = (run.error.message if run.error else None) or f"the run {run.status.replace('_', ' ')}"
        super().__init__(f"Run {run.id} {run.status}: {detail}", code=code, detail=detail, request_id=request_id)

    def __str__(self) -> str:
        if not self.log:
            return self.message
        tail = "\n".join(self.log.rstrip().splitlines()[-10:])
        return f"{self.message}\n--- last lines of the run log ---\n{tail}"


class WaitTimeoutError(FMUGatewayError, TimeoutError):
    """The run (or sweep) did not finish within the time the caller was willing to wait; it may
    still finish. ``run`` is what was waited for, as last seen."""

    def __init__(self, run: Run | Sweep, waited_s: float) -> None:
        self.run = run
        what = "Sweep" if run.id.startswith("swp_") else "Run"
        super().__init__(f"{what} {run.id} is still {run.status} after {waited_s:g} s.", code="wait_timeout")


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for an error response, problem+json or not."""
    problem: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict):
            problem = body
    except ValueError:
        text = response.text.strip()
        if text:
            problem = {"detail": text[:500]}
    return _BY_STATUS.get(response.status_code, APIError)(response, problem)


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
