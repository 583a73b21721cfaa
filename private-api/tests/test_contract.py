from __future__ import annotations

from pathlib import Path

from app.contract import render_contract

CONTRACT = Path(__file__).resolve().parents[2] / "shared-specs" / "api_contract.yaml"


def test_api_contract_matches_the_app() -> None:
    assert CONTRACT.read_text() == render_contract(), "shared-specs/api_contract.yaml drifted: run `make contract`"


def test_contract_documents_the_main_paths() -> None:
    text = render_contract()
    for path in ("/v1/fmus:", "/v1/fmus/{fmu_id}/runs:", "/v1/runs/{run_id}/result:", "/v1/runs/{run_id}/log:"):
        assert path in text
