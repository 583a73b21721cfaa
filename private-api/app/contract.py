"""The OpenAPI contract (``shared-specs/api_contract.yaml``), rendered from the app itself.

FastAPI documents only the success responses and a 422 of its own shape; every error this API
sends is RFC 9457 problem+json (``app.errors``), so ``with_problem_responses`` says so for every
operation: 422 and a ``default`` response carrying ``Problem``. Clients and contract fuzzing
(tests/api/test_contract_fuzz.py) then check each error against what we publish.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from app.config import Settings
from app.schemas.common import Problem

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
            responses["default"] = {"description": "An error, as RFC 9457 problem details with a stable `code`.",
                                    "content": _PROBLEM_CONTENT}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return spec


def render_contract() -> str:
    from app.main import create_app  # here: app.main builds its /openapi.json with this module

    # Default settings suffice: the schema does not depend on configuration.
    return yaml.safe_dump(create_app(Settings()).openapi(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_contract())
