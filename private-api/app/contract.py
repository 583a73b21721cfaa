"""Render the OpenAPI contract (``shared-specs/api_contract.yaml``) from the app itself."""

from __future__ import annotations

import sys

import yaml

from app.config import Settings
from app.main import create_app


def render_contract() -> str:
    # Default settings suffice: the schema does not depend on configuration.
    spec = create_app(Settings()).openapi()
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_contract())
