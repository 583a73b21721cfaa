"""A fake FMU Gateway for the SDK's own tests: pytest-httpserver on 127.0.0.1 answering with the
API's JSON shapes, so the client is tested over real HTTP without the server. Only what the client
does is tested here; that the real server agrees is private-api/tests/sdk's job."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient
from fmu_gateway_sdk._retry import RetryPolicy

API_KEY = "fmu_test_0123456789abcdef"
FMU_ID = "fmu_fake1"
RUN_ID = "run_fake1"
SWEEP_ID = "swp_fake1"
CREATED_AT = "2026-01-01T00:00:00Z"
#: Retries in milliseconds, so a test of three attempts takes no time.
FAST_RETRIES = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)


def fmu_json(**fields: Any) -> dict[str, Any]:
    return {"id": FMU_ID, "object": "fmu", "sha256": "0" * 64, "size": 1234, "filename": "Model.fmu",
            "fmi_version": "2.0", "model_name": "Model", "guid": "{fake}", "supports_model_exchange": True,
            "supports_co_simulation": True, "created_at": CREATED_AT, "variable_count": 0, "variables": [],
            **fields}


def run_json(status: str = "queued", **fields: Any) -> dict[str, Any]:
    result = {"rows": 2, "columns": ["time", "x0"], "bytes": 10} if status == "succeeded" else None
    return {"id": RUN_ID, "object": "run", "fmu_id": FMU_ID, "status": status, "spec": {}, "error": None,
            "result": result, "timings": {}, "created_at": CREATED_AT, **fields}


def sweep_json(status: str = "queued", **fields: Any) -> dict[str, Any]:
    done = status == "finished"
    return {"id": SWEEP_ID, "object": "sweep", "fmu_id": FMU_ID, "status": status, "method": "grid",
            "total": 2, "counts": {"succeeded": 2 if done else 0, "queued": 0 if done else 2},
            "created_at": CREATED_AT, **fields}


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": False, "next_cursor": None}


def problem(status: int, code: str, detail: str = "it went wrong", *, request_id: str | None = "req_fake1",
            headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    """An RFC 9457 problem response, as the gateway sends its errors."""
    body = {"type": "about:blank", "title": f"Error {status}", "status": status, "detail": detail, "code": code,
            **({"request_id": request_id} if request_id else {}), **extensions}
    all_headers = {"X-Request-ID": request_id or "req_header", **(headers or {})}
    return Response(json.dumps(body), status=status, content_type="application/problem+json", headers=all_headers)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers={"X-Request-ID": "req_ok"})


class FakeGateway:
    """Routes of the gateway on a pytest-httpserver, and what the client sent to them."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.base_url = server.url_for("").rstrip("/")

    # -- what the server answers

    def answers(self, method: str, path: str, *responses: Response | dict[str, Any]) -> None:
        """``method path`` answers ``responses`` in turn, then the last one for good."""
        *first, last = [r if isinstance(r, Response) else json_response(r) for r in responses]
        for response in first:
            self.server.expect_oneshot_request(path, method=method).respond_with_response(response)
        self.server.expect_request(path, method=method).respond_with_response(last)

    def answers_with(self, method: str, path: str, handler: Callable[[Request], Response]) -> None:
        self.server.expect_request(path, method=method).respond_with_handler(handler)

    def serves_runs(self, *, created: str = "queued") -> None:
        """Run creation, the run, its result (any bytes: the client does not read them unasked) and log."""
        self.answers("POST", f"/v1/fmus/{FMU_ID}/runs", run_json(created))
        self.answers("GET", f"/v1/runs/{RUN_ID}", run_json("succeeded"))
        self.answers("GET", f"/v1/runs/{RUN_ID}/result", Response(b"arrow-ipc-bytes"))
        self.answers("POST", f"/v1/runs/{RUN_ID}/cancel", run_json("cancelled"))

    def serves_sweeps(self) -> None:
        """Sweep creation of an already finished sweep, and what ``sweeps.result`` reads."""
        self.answers("POST", f"/v1/fmus/{FMU_ID}/sweeps", sweep_json("finished"))
        self.answers("GET", f"/v1/sweeps/{SWEEP_ID}", sweep_json("finished"))
        self.answers("GET", f"/v1/sweeps/{SWEEP_ID}/runs", page([]))
        self.answers("GET", f"/v1/sweeps/{SWEEP_ID}/result", Response(b"long-table"))
        self.answers("GET", f"/v1/sweeps/{SWEEP_ID}/summary", Response(b"summary"))
        self.answers("POST", f"/v1/sweeps/{SWEEP_ID}/cancel", sweep_json("cancelled"))

    def serves_uploads(self) -> None:
        """An FMU the server does not have yet (the hash lookup finds nothing), then its upload."""
        self.answers("GET", "/v1/fmus", page([]))
        self.answers("POST", "/v1/fmus", fmu_json())

    # -- what the client sent

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [request for request, _ in self.server.log
                if (method is None or request.method == method) and (path is None or request.path == path)]

    def bodies(self, method: str, path: str) -> list[Any]:
        return [json.loads(request.get_data()) for request in self.requests(method, path)]

    def body(self, method: str, path: str) -> Any:
        """The one JSON body sent to ``method path``."""
        bodies = self.bodies(method, path)
        assert len(bodies) == 1, f"{len(bodies)} requests to {method} {path}"
        return bodies[0]


class Twin:
    """Calls a method of the sync client, or awaits the same method of the async client: a test
    written once runs against both."""

    def __init__(self, kind: str, base_url: str) -> None:
        self.kind = kind
        self.base_url = base_url

    def __call__(self, method: str, *args: Any, retry: RetryPolicy = FAST_RETRIES, **kwargs: Any) -> Any:
        if self.kind == "sync":
            with FMUGatewayClient(API_KEY, self.base_url) as client:
                client._api.retry = retry
                return attrgetter(method)(client)(*args, **kwargs)

        async def main() -> Any:
            async with AsyncFMUGatewayClient(API_KEY, self.base_url) as client:
                client._api.retry = retry
                return await attrgetter(method)(client)(*args, **kwargs)

        return asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HangingUpServer:
    base_url: str
    #: The headers of every request read, lower-cased, in order of arrival.
    requests: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def hanging_up_server(drops: int, then: dict[str, Any]) -> Iterator[HangingUpServer]:
    """A server on 127.0.0.1 that reads each of the first ``drops`` requests whole and hangs up
    without an answer (as a server that crashed after doing the work would), then answers ``then``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = HangingUpServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                server.requests.append(_read_request(connection))
                if len(server.requests) > drops:
                    body = json.dumps(then).encode()
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                       + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _read_request(connection: socket.socket) -> dict[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    headers[":request-line"] = lines[0]
    missing = int(headers.get("content-length", "0")) - len(body)
    while missing > 0:
        chunk = connection.recv(missing)
        if not chunk:
            break
        missing -= len(chunk)
    return headers
