"""The OpenAPI contract (``shared-specs/api_contract.yaml``), rendered from the app itself: its
errors documented as problem+json (``app.kit.openapi``), so clients and contract fuzzing
(tests/api/test_contract_fuzz.py) check each error against what we publish.
"""

from __future__ import annotations

import sys

import yaml

from app.config import Settings
from app.main import create_app


def render_contract() -> str:
    # Default settings suffice: the schema does not depend on configuration.
    return yaml.safe_dump(create_app(Settings()).openapi(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_contract())
