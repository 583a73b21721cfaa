"""Assertions on the API's problem+json error responses."""

from __future__ import annotations

import httpx


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    # A replayed response (Idempotency-Key) is the first one verbatim, with that request's id.
    if response.headers.get("idempotent-replayed") != "true":
        assert body["request_id"] == response.headers["x-request-id"]
    assert body["title"] and body["detail"]
    return body
