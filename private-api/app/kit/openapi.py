"""Every error this API sends is RFC 9457 problem+json (``app.errors``); FastAPI documents only the
success responses and a 422 of its own shape, so ``with_problem_responses`` says so for every
operation: 422 and a ``default`` response carrying ``Problem``, and any other error status a route
declares (``responses={507: {"description": ...}}``) carrying it too."""

from __future__ import annotations

from typing import Any

from app.kit.schemas import Problem

PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def with_problem_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every operation's errors documented as problem+json (changed in place)."""
    for item in spec.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Validation error; `code` says which (e.g. validation_error).",
                                    "content": _PROBLEM_CONTENT}
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = _PROBLEM_CONTENT
            responses["default"] = {"description": "An error, as RFC 9457 problem details with a stable `code`.",
                                    "content": _PROBLEM_CONTENT}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return spec
