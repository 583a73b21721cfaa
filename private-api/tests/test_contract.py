from __future__ import annotations

from pathlib import Path

import yaml

from app.contract import render_contract

CONTRACT = Path(__file__).resolve().parents[2] / "shared-specs" / "api_contract.yaml"


def test_api_contract_matches_the_app() -> None:
    assert CONTRACT.read_text() == render_contract(), "shared-specs/api_contract.yaml drifted: run `make contract`"


def test_contract_documents_the_main_paths() -> None:
    text = render_contract()
    for path in ("/v1/fmus:", "/v1/fmus/{fmu_id}/runs:", "/v1/runs/{run_id}/result:", "/v1/runs/{run_id}/log:"):
        assert path in text


def test_507_storage_full_is_documented_on_exactly_the_routes_that_store() -> None:
    # The same declaration picks the routes app.storage_admission refuses while storage is full.
    spec = yaml.safe_load(render_contract())
    documented = {(method, path): operation["responses"]["507"] for path, item in spec["paths"].items()
                  for method, operation in item.items() if "507" in operation.get("responses", {})}
    assert set(documented) == {("post", "/v1/fmus"), ("post", "/v1/fmus/{fmu_id}/runs"),
                               ("post", "/v1/fmus/{fmu_id}/sweeps")}
    for response in documented.values():
        assert response["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
