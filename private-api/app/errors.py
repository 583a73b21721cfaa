"""Business errors: each carries its HTTP status and a stable machine-readable code.

One handler (registered in ``app.main``) renders every ``ProblemError`` as RFC 9457
``application/problem+json``; routes and services just raise.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, ClassVar

from fastapi.responses import JSONResponse

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
PROBLEM_TYPE = "https://fmu-gateway.dev/problems/"


class ProblemError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        # Extra members of the problem document, e.g. ``platforms`` or ``variable``.
        self.extra = extra


def problem_response(status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail,
            "code": code, "request_id": request_id_var.get(), **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Not found"


class Unauthenticated(ProblemError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class PayloadTooLarge(ProblemError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class StorageFull(ProblemError):
    """Blob storage is (nearly) out of space: the server's state, not the request's. Refused before
    anything is stored (``app.storage_admission``), or a write that met a full disk (``app.main``)."""

    status = 507
    code = "storage_full"
    title = "Storage is full"
    # Space comes back when an operator frees or adds some, or retention removes old results.
    RETRY_AFTER_S: ClassVar[int] = 60

    def __init__(self, detail: str = ("The server's storage is full: uploads, runs and sweeps are refused "
                                      "until space is freed; retry later."), **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(self.RETRY_AFTER_S)}, **extra)


class InvalidFMU(ProblemError):
    """The uploaded file is not an FMU we can accept; subclasses refine the code."""

    status = 422
    code = "invalid_fmu"
    title = "Invalid FMU"


class NotAZip(InvalidFMU):
    code = "not_a_zip"
    title = "Not a zip archive"


class UnsafeArchive(InvalidFMU):
    code = "unsafe_archive"
    title = "Unsafe archive"


class ArchiveTooLarge(InvalidFMU):
    status = 413
    code = "archive_too_large"
    title = "Archive expands beyond the allowed size"


class InvalidModelDescription(InvalidFMU):
    code = "invalid_model_description"
    title = "Invalid modelDescription.xml"


class MissingModelDescription(InvalidFMU):
    code = "missing_model_description"
    title = "modelDescription.xml not found"


class UnsupportedFMIVersion(InvalidFMU):
    code = "unsupported_fmi_version"
    title = "Unsupported FMI version"


class UnsupportedPlatform(InvalidFMU):
    code = "unsupported_platform"
    title = "No binary for this server's platform"


class InvalidRunSpec(ProblemError):
    status = 422
    code = "invalid_run_spec"
    title = "Invalid run specification"


class RunNotFinished(ProblemError):
    status = 409
    code = "run_not_finished"
    title = "Run has not finished"


class ResultExpired(ProblemError):
    status = 410
    code = "result_expired"
    title = "The run's result and log are past their retention"


class ResultUnavailable(ProblemError):
    status = 409
    code = "result_unavailable"
    title = "Run has no result"


class IdempotencyKeyReused(ProblemError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused with another request"


class TooManyVariables(InvalidFMU):
    status = 413
    code = "too_many_variables"
    title = "Model declares too many variables"


class ModelInfoTooLarge(InvalidFMU):
    status = 413
    code = "model_info_too_large"
    title = "Model information too large to store"


class InvalidCursor(ProblemError):
    status = 422
    code = "invalid_cursor"
    title = "Invalid pagination cursor"


class InvalidFilename(ProblemError):
    status = 422
    code = "invalid_filename"
    title = "Invalid filename"
