"""Request body caps, enforced before anything reads a body: authentication, idempotency, routes.

ASGI middleware outside every other layer but the request id: a ``Content-Length`` over the
route's cap is refused without reading a byte, and a chunked body is counted while it streams and
cut off at the cap, so an anonymous client cannot make the server hold or spool more than one
cap's worth of bytes. Every part of a multipart body counts, not only the file. The cap per route:

- ``POST /v1/fmus``: the largest upload any tier may make (``max_upload_bytes``) plus room for
  the multipart envelope, 413 ``payload_too_large`` as the route's own check; the route checks
  the caller's own tier cap once it knows the caller;
- Stripe's webhooks: ``max_webhook_bytes`` (Stripe's events are a few KiB);
- everything else: ``max_request_bytes`` (413 ``request_too_large``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import PayloadTooLarge, ProblemError, problem_response

# The multipart envelope of an upload: boundaries, part headers and a few small fields.
MULTIPART_ALLOWANCE = 64 << 10
UPLOAD_PATH = "/v1/fmus"
WEBHOOK_PREFIX = "/v1/billing/webhooks/"


class RequestBodyTooLarge(PayloadTooLarge):
    code = "request_too_large"
    title = "Request body too large"


@dataclass(frozen=True)
class BodyCap:
    limit: int  # what the client is told
    upload: bool  # an FMU upload: the envelope gets MULTIPART_ALLOWANCE on top

    @property
    def bytes(self) -> int:
        return self.limit + MULTIPART_ALLOWANCE if self.upload else self.limit

    def error(self) -> PayloadTooLarge:
        if self.upload:
            return PayloadTooLarge(f"The FMU exceeds the upload limit of {self.limit} bytes.", limit=self.limit)
        return RequestBodyTooLarge(f"The request body exceeds this route's limit of {self.limit} bytes.",
                                   limit=self.limit)


def body_cap(settings: Settings, method: str, path: str, max_fmu_bytes: int | None = None) -> BodyCap:
    """The most a request to ``method path`` may send; ``max_fmu_bytes`` is the caller's upload cap
    once the caller is known (before, the largest any caller may have)."""
    if method == "POST" and path.rstrip("/") == UPLOAD_PATH:
        return BodyCap(min(settings.max_upload_bytes, max_fmu_bytes or settings.max_upload_bytes), upload=True)
    if path.startswith(WEBHOOK_PREFIX):
        return BodyCap(settings.max_webhook_bytes, upload=False)
    return BodyCap(settings.max_request_bytes, upload=False)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap(self.settings, scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > cap.bytes:
            await refuse(cap.error(), scope, receive, send)
            return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise cap.error()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap.bytes:
                    exceeded = True
                    raise cap.error()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Whatever an inner layer made of the cut-off body (a 400, a 500) gives way to the 413.
            if exceeded and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await refuse(cap.error(), scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def refuse(error: ProblemError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with ``error`` as problem+json, closing the connection: the rest of the body is not read."""
    response = problem_response(error.status, error.code, error.title, error.detail,
                                {**error.headers, "Connection": "close"}, **error.extra)
    await response(scope, receive, send)
