"""Fills the placeholders of deploy/aws_ecs_config.json (${AWS_ACCOUNT_ID}, ${AWS_REGION},
${IMAGE_REGISTRY}, ${IMAGE_TAG}, ${DOCKER_GID}) from the environment and writes one
`aws ecs register-task-definition --cli-input-json` file per task definition.

    python3 deploy/render_ecs.py build/ecs     # prints the file of each family
"""

from __future__ import annotations

import json
import os
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).with_name("aws_ecs_config.json")


def placeholders(node: Any) -> set[str]:
    """Every ${NAME} the descriptor uses."""
    if isinstance(node, str):
        return set(string.Template(node).get_identifiers())
    if isinstance(node, dict):
        return set().union(*(placeholders(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(placeholders(item) for item in node))
    return set()


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    # Substituted string by string, so a value can never break the JSON around it.
    if isinstance(node, str):
        return string.Template(node).substitute(values)
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    return node


def render(values: Mapping[str, str], config: Path = CONFIG) -> list[dict[str, Any]]:
    """The task definitions with every placeholder filled; KeyError names the first one missing."""
    definitions: list[dict[str, Any]] = json.loads(config.read_text())["taskDefinitions"]
    missing = sorted(placeholders(definitions) - set(values))
    if missing:
        raise KeyError(f"set {', '.join(missing)}")
    return [_fill(definition, values) for definition in definitions]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    try:
        definitions = render(os.environ)
    except KeyError as error:
        print(f"render_ecs: {error.args[0]}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for definition in definitions:
        path = out / f"{definition['family']}.json"
        path.write_text(json.dumps(definition, indent=2) + "\n")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
