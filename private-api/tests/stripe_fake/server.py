"""A fake Stripe on 127.0.0.1 that the real ``stripe`` library talks to.

It speaks Stripe's wire format for the endpoints the gateway uses: form-encoded requests with
bracketed keys (``metadata[user_id]=…``), JSON objects back, errors as ``{"error": {type, code,
message, param}}``, ``Idempotency-Key`` replays and meter event identifier deduplication. Test
controls are plain methods: take it down and bring it back, inspect what it received, and build
webhook events with Stripe's signature scheme so a test can deliver them to the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = "2026-10-28.endive"


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding back into nested objects: ``a[b][0][c]=v`` → ``{"a": {"b": [{"c": "v"}]}}``."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def stripe_error(status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status,
                        headers={"Request-Id": f"req_{secrets.token_hex(7)}"})


def sign(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe sends: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">``."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass
class Delivery:
    """A webhook ready to POST: the exact bytes and the headers Stripe would send with them."""

    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeStripe:
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_hex(16))
    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(12))
    port: int = 0
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)  # by payment intent id
    meter_events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # None: up; "refused": nothing listens on the port; "503": every request gets a 503 api_error.
    outage: str | None = None
    # Accept the next N meter events but answer 500, as if the response were lost on the way back.
    lose_meter_event_responses: int = 0
    # The next this many meter events are refused for good (400, as for a customer Stripe does not know).
    reject_meter_events: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._idempotent: dict[str, tuple[int, bytes]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[
            Route("/v1/customers", self._create_customer, methods=["POST"]),
            Route("/v1/customers/{id}", self._get_customer, methods=["GET"]),
            Route("/v1/checkout/sessions", self._create_checkout_session, methods=["POST"]),
            Route("/v1/checkout/sessions/{id}", self._get_checkout_session, methods=["GET"]),
            Route("/v1/billing/meter_events", self._create_meter_event, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=["GET", "POST", "DELETE"]),
        ])
        self.app.add_middleware(_StripeMiddleware, fake=self)

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeStripe:
        if not self.port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-stripe", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake Stripe did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def go_down(self, mode: str = "refused") -> None:
        """An outage: ``"refused"`` closes the port (connection refused), ``"503"`` answers every request 503."""
        assert mode in ("refused", "503")
        self.outage = mode
        if mode == "refused":
            self.stop()

    def come_back(self) -> None:
        if self.outage == "refused":
            self.start()
        self.outage = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- what it saw -----------------------------------------------------------------------
    def meter_identifiers(self) -> list[str]:
        with self._lock:
            return [event["identifier"] for event in self.meter_events]

    # ---- the API ---------------------------------------------------------------------------
    async def _create_customer(self, request: Request) -> Response:
        params = decode_form(await request.body())
        customer = {"id": new_id("cus").replace("_test", ""), "object": "customer", "created": int(time.time()),
                    "email": params.get("email"), "name": params.get("name"),
                    "metadata": params.get("metadata", {}), "livemode": False}
        with self._lock:
            self.customers[customer["id"]] = customer
        return JSONResponse(customer)

    async def _get_customer(self, request: Request) -> Response:
        customer = self.customers.get(request.path_params["id"])
        if customer is None:
            return _missing("customer", request.path_params["id"])
        return JSONResponse(customer)

    async def _create_checkout_session(self, request: Request) -> Response:
        params = decode_form(await request.body())
        mode = params.get("mode")
        if mode not in ("payment", "subscription", "setup"):
            return stripe_error(400, "invalid_request_error", "Missing required param: mode.",
                                code="parameter_missing", param="mode")
        if not params.get("success_url"):
            return stripe_error(400, "invalid_request_error", "Missing required param: success_url.",
                                code="parameter_missing", param="success_url")
        items = params.get("line_items") or []
        if not items:
            return stripe_error(400, "invalid_request_error", "Missing required param: line_items.",
                                code="parameter_missing", param="line_items")
        total = 0
        for index, item in enumerate(items):
            price = item.get("price_data") or {}
            recurring = price.get("recurring")
            if (mode == "subscription") != bool(recurring):
                return stripe_error(400, "invalid_request_error",
                                    "You must provide at least one recurring price in `subscription` mode"
                                    if mode == "subscription" else
                                    "You specified `payment` mode but passed a recurring price.",
                                    param=f"line_items[{index}][price_data][recurring]")
            total += int(price["unit_amount"]) * int(item.get("quantity", 1))
        customer = params.get("customer")
        if customer and customer not in self.customers:
            return _missing("customer", customer)
        session_id = "cs_test_" + secrets.token_hex(24)
        session = {
            "id": session_id, "object": "checkout.session", "mode": mode, "status": "open",
            "payment_status": "unpaid", "amount_subtotal": total, "amount_total": total,
            "currency": items[0]["price_data"]["currency"], "customer": customer,
            "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata", {}),
            "payment_intent": None, "subscription": None, "invoice": None, "created": int(time.time()),
            "expires_at": int(time.time()) + 86400, "livemode": False,
            "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
            "url": f"{self.url}/c/pay/{session_id}",
        }
        with self._lock:
            self.checkout_sessions[session_id] = {
                **session,
                # Kept to build later events, as Stripe copies them onto the objects it creates.
                "_line_items": items,
                "_payment_intent_metadata": (params.get("payment_intent_data") or {}).get("metadata", {}),
                "_subscription_metadata": (params.get("subscription_data") or {}).get("metadata", {}),
            }
        return JSONResponse(session)

    async def _get_checkout_session(self, request: Request) -> Response:
        stored = self.checkout_sessions.get(request.path_params["id"])
        if stored is None:
            return _missing("checkout.session", request.path_params["id"])
        return JSONResponse(_public(stored))

    async def _create_meter_event(self, request: Request) -> Response:
        params = decode_form(await request.body())
        for name in ("event_name", "payload"):
            if not params.get(name):
                return stripe_error(400, "invalid_request_error", f"Missing required param: {name}.",
                                    code="parameter_missing", param=name)
        payload = params["payload"]
        if "stripe_customer_id" not in payload or "value" not in payload:
            return stripe_error(400, "invalid_request_error",
                                "The payload must contain `stripe_customer_id` and `value`.", param="payload")
        identifier = params.get("identifier") or secrets.token_hex(16)
        event = {"object": "billing.meter_event", "created": int(time.time()), "event_name": params["event_name"],
                 "identifier": identifier, "livemode": False, "payload": payload,
                 "timestamp": int(params.get("timestamp") or time.time())}
        with self._lock:
            if self.reject_meter_events > 0:
                self.reject_meter_events -= 1
                return stripe_error(400, "invalid_request_error", "No such customer: "
                                    f"'{payload['stripe_customer_id']}'", code="resource_missing", param="payload")
            if any(seen["identifier"] == identifier for seen in self.meter_events):
                return stripe_error(400, "invalid_request_error",
                                    f"An event already exists with identifier {identifier}.",
                                    code="resource_already_exists", param="identifier")
            self.meter_events.append(event)
            if self.lose_meter_event_responses > 0:
                self.lose_meter_event_responses -= 1
                return stripe_error(500, "api_error", "An unknown error occurred.")
        return JSONResponse(event)

    async def _unknown(self, request: Request) -> Response:
        return stripe_error(404, "invalid_request_error",
                            f"Unrecognized request URL ({request.method}: {request.url.path}).")

    # ---- webhook events --------------------------------------------------------------------
    def event(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        return {"id": new_id("evt").replace("_test", ""), "object": "event", "api_version": API_VERSION,
                "created": int(time.time()), "data": data, "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None}, "type": type_}

    def delivery(self, event: dict[str, Any], *, secret: str | None = None,
                 timestamp: int | None = None) -> Delivery:
        """The event as Stripe POSTs it: compact JSON bytes with a ``Stripe-Signature`` header."""
        body = json.dumps(event, separators=(",", ":")).encode()
        return Delivery(event, body, {"Content-Type": "application/json; charset=utf-8",
                                      "Stripe-Signature": sign(body, secret or self.webhook_secret, timestamp),
                                      "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})

    def complete_checkout(self, session_id: str, paid: bool = True) -> dict[str, Any]:
        """The customer finished the Checkout page: ``checkout.session.completed``. ``paid=False`` is a
        delayed payment method (bank debit): the session completes unpaid and settles later."""
        with self._lock:
            stored = self.checkout_sessions[session_id]
            stored["status"] = "complete"
            if stored["mode"] == "payment":
                stored["payment_intent"] = stored["payment_intent"] or new_id("pi")
                stored["payment_status"] = "paid" if paid else "unpaid"
                if paid:
                    self._charge(stored)
            else:
                stored["payment_status"] = "paid"
                subscription = self._new_subscription(stored)
                stored["subscription"] = subscription["id"]
                stored["invoice"] = new_id("in")
        return self.event("checkout.session.completed", _public(stored))

    def async_payment(self, session_id: str, succeeded: bool = True) -> dict[str, Any]:
        with self._lock:
            stored = self.checkout_sessions[session_id]
            stored["payment_status"] = "paid" if succeeded else "unpaid"
            if succeeded:
                self._charge(stored)
        kind = "succeeded" if succeeded else "failed"
        return self.event(f"checkout.session.async_payment_{kind}", _public(stored))

    def subscription_event(self, subscription_id: str, action: str, status: str | None = None,
                           tier: str | None = None) -> dict[str, Any]:
        """``customer.subscription.<action>`` (created, updated, deleted), optionally changing its
        status or its tier (metadata, as a plan change made through our API would)."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            previous: dict[str, Any] = {}
            if status is not None and status != subscription["status"]:
                previous["status"] = subscription["status"]
                subscription["status"] = status
            if tier is not None:
                previous["metadata"] = dict(subscription["metadata"])
                subscription["metadata"]["tier"] = tier
            if action == "deleted":
                subscription["status"] = "canceled"
                subscription["canceled_at"] = subscription["ended_at"] = int(time.time())
            obj = json.loads(json.dumps(subscription))
        return self.event(f"customer.subscription.{action}", obj, previous if action == "updated" else None)

    def invoice_paid(self, subscription_id: str, billing_reason: str = "subscription_cycle") -> dict[str, Any]:
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            item = subscription["items"]["data"][0]
            amount = item["price"]["unit_amount"]
            now = int(time.time())
            invoice = {
                "id": new_id("in"), "object": "invoice", "customer": subscription["customer"],
                "status": "paid", "paid": True, "amount_due": amount, "amount_paid": amount, "amount_remaining": 0,
                "currency": item["price"]["currency"], "billing_reason": billing_reason, "created": now,
                "period_start": now, "period_end": now + 30 * 86400, "livemode": False,
                "parent": {"type": "subscription_details", "quote_details": None,
                           "subscription_details": {"subscription": subscription_id,
                                                    "metadata": dict(subscription["metadata"])}},
                "lines": {"object": "list", "has_more": False, "data": [{
                    "id": new_id("il"), "object": "line_item", "amount": amount,
                    "currency": item["price"]["currency"], "metadata": dict(subscription["metadata"]),
                    "period": {"start": now, "end": now + 30 * 86400}}]},
            }
        return self.event("invoice.paid", invoice)

    def refund(self, payment_intent: str, amount: int | None = None) -> dict[str, Any]:
        """Refund ``amount`` more cents of a payment (all that is left by default): ``charge.refunded``
        carries the charge with its cumulative ``amount_refunded``."""
        with self._lock:
            charge = self.charges[payment_intent]
            left = charge["amount"] - charge["amount_refunded"]
            charge["amount_refunded"] += left if amount is None else min(amount, left)
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            obj = json.loads(json.dumps(charge))
        return self.event("charge.refunded", obj)

    def dispute(self, payment_intent: str, amount: int | None = None) -> dict[str, Any]:
        with self._lock:
            charge = self.charges[payment_intent]
            charge["disputed"] = True
            dispute = {"id": new_id("dp").replace("_test", ""), "object": "dispute",
                       "amount": charge["amount"] if amount is None else amount, "currency": charge["currency"],
                       "charge": charge["id"], "payment_intent": payment_intent, "reason": "fraudulent",
                       "status": "needs_response", "created": int(time.time()), "livemode": False,
                       "is_charge_refundable": False, "metadata": {}}
        return self.event("charge.dispute.created", dispute)

    def session_of(self, session_id: str) -> dict[str, Any]:
        return _public(self.checkout_sessions[session_id])

    def _charge(self, stored: dict[str, Any]) -> None:
        intent = stored["payment_intent"]
        self.charges.setdefault(intent, {
            "id": new_id("ch"), "object": "charge", "amount": stored["amount_total"], "amount_captured":
            stored["amount_total"], "amount_refunded": 0, "currency": stored["currency"],
            "customer": stored["customer"], "payment_intent": intent, "paid": True, "refunded": False,
            "disputed": False, "status": "succeeded", "created": int(time.time()), "livemode": False,
            "metadata": dict(stored["_payment_intent_metadata"])})

    def _new_subscription(self, stored: dict[str, Any]) -> dict[str, Any]:
        price = stored["_line_items"][0]["price_data"]
        now = int(time.time())
        subscription = {
            "id": new_id("sub"), "object": "subscription", "customer": stored["customer"], "status": "active",
            "metadata": dict(stored["_subscription_metadata"]), "cancel_at_period_end": False,
            "canceled_at": None, "ended_at": None, "created": now, "start_date": now, "livemode": False,
            "items": {"object": "list", "has_more": False, "data": [{
                "id": new_id("si"), "object": "subscription_item", "quantity": 1,
                "current_period_start": now, "current_period_end": now + 30 * 86400,
                "price": {"id": new_id("price"), "object": "price", "currency": price["currency"],
                          "unit_amount": int(price["unit_amount"]), "type": "recurring",
                          "recurring": {"interval": price["recurring"]["interval"], "interval_count": 1}}}]},
        }
        self.subscriptions[subscription["id"]] = subscription
        return subscription


def _public(stored: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in stored.items() if not k.startswith("_")}))


def _missing(kind: str, id_: str) -> JSONResponse:
    return stripe_error(404, "invalid_request_error", f"No such {kind}: '{id_}'", code="resource_missing",
                        param="id")


class _StripeMiddleware:
    """Outage, API key check and ``Idempotency-Key`` replays, in front of every endpoint."""

    def __init__(self, app: Any, fake: FakeStripe) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        fake = self.fake
        with fake._lock:
            fake.requests.append((request.method, request.url.path))
        if fake.outage == "503":
            response: Response = stripe_error(503, "api_error", "Stripe is temporarily unavailable.")
            await response(scope, receive, send)
            return
        if request.headers.get("authorization") != f"Bearer {fake.api_key}":
            response = stripe_error(401, "invalid_request_error", "Invalid API Key provided.")
            await response(scope, receive, send)
            return
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        if key and key in fake._idempotent:
            status, body = fake._idempotent[key]
            response = Response(body, status_code=status, media_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
            await response(scope, receive, send)
            return
        captured: dict[str, Any] = {"status": 0, "body": b""}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, capture)
        # Like Stripe, a result is saved for replay unless the server failed.
        if key and captured["status"] < 500:
            fake._idempotent[key] = (captured["status"], captured["body"])
