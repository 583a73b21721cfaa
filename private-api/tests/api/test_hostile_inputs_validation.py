"""Hostile inputs at the edge: each is refused with 422 problem+json before a row is written or a
credit held, never a 500 (on PostgreSQL especially: it refuses NUL in text and over-long strings)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_process import Gateway
from problems import assert_problem


def balance(client: httpx.Client) -> int:
    credits: int = client.get("/v1/billing/balance").json()["credits"]
    return credits


def raw_json(client: httpx.Client, path: str, body: str) -> httpx.Response:
    """JSON that httpx would not write for us: lone surrogates, numbers beyond float."""
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


def with_model_description(fmu: Path, edit: Any) -> bytes:
    """The FMU's bytes with its modelDescription.xml passed through ``edit``."""
    out = io.BytesIO()
    with zipfile.ZipFile(fmu) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "modelDescription.xml":
                data = edit(data.decode()).encode()
            target.writestr(item, data)
    return out.getvalue()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.create_user(credits=1000))


@pytest.fixture(scope="module")
def feedthrough(client: httpx.Client, fmus: dict[str, Path]) -> str:
    response = client.post("/v1/fmus", files={"file": ("Feedthrough.fmu", fmus["Feedthrough"].read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


@pytest.fixture(scope="module")
def vanderpol(client: httpx.Client, fmus: dict[str, Path]) -> str:
    response = client.post("/v1/fmus", files={"file": ("VanDerPol.fmu", fmus["VanDerPol"].read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


class TestUpload:
    def test_a_model_name_over_255_characters_is_422_and_nothing_is_stored(
            self, client: httpx.Client, fmus: dict[str, Path]) -> None:
        data = with_model_description(fmus["VanDerPol"],
                                      lambda xml: re.sub(r'modelName="[^"]*"', f'modelName="{"m" * 300}"', xml))
        before = client.get("/v1/fmus", params={"limit": 100}).json()["data"]
        body = assert_problem(client.post("/v1/fmus", files={"file": ("long.fmu", data)}),
                              422, "invalid_model_description")
        assert body["attribute"] == "modelName"
        assert client.get("/v1/fmus", params={"limit": 100}).json()["data"] == before

    def test_a_filename_over_255_characters_is_422(self, client: httpx.Client, fmus: dict[str, Path]) -> None:
        response = client.post("/v1/fmus", params={"filename": "f" * 300 + ".fmu"},
                               content=fmus["VanDerPol"].read_bytes(),
                               headers={"content-type": "application/octet-stream"})
        assert_problem(response, 422, "invalid_filename")

    def test_a_filename_with_nul_is_422(self, client: httpx.Client, fmus: dict[str, Path]) -> None:
        response = client.post("/v1/fmus", params={"filename": "a\x00b.fmu"}, content=fmus["VanDerPol"].read_bytes(),
                               headers={"content-type": "application/octet-stream"})
        assert_problem(response, 422, "invalid_filename")


class TestApiKeys:
    def test_a_key_name_containing_nul_is_422(self, client: httpx.Client) -> None:
        assert_problem(client.post("/v1/api-keys", json={"name": "ops\x00key"}), 422, "validation_error")

    def test_an_expiry_past_the_calendar_in_utc_is_422(self, client: httpx.Client) -> None:
        response = client.post("/v1/api-keys", json={"expires_at": "9999-12-31T23:59:59-14:00"})
        assert_problem(response, 422, "validation_error")

    def test_an_unknown_scope_with_a_lone_surrogate_is_422(self, client: httpx.Client) -> None:
        assert_problem(raw_json(client, "/v1/api-keys", '{"scopes": ["\\ud800"]}'), 422, "validation_error")


class TestRunInputs:
    def test_a_start_value_with_a_lone_surrogate_is_422_costs_nothing_and_lists_still_work(
            self, client: httpx.Client, feedthrough: str) -> None:
        before = balance(client)
        response = raw_json(client, f"/v1/fmus/{feedthrough}/runs",
                            '{"stop_time": 1, "start_values": {"label": "x\\udc00y"}}')
        assert_problem(response, 422, "validation_error")
        assert balance(client) == before
        assert client.get("/v1/runs").status_code == 200

    def test_a_start_value_name_with_a_lone_surrogate_is_422(self, client: httpx.Client, feedthrough: str) -> None:
        response = raw_json(client, f"/v1/fmus/{feedthrough}/runs", '{"stop_time": 1, "start_values": {"\\ud800": 1}}')
        assert_problem(response, 422, "validation_error")

    def test_a_start_value_name_with_nul_is_422(self, client: httpx.Client, feedthrough: str) -> None:
        response = client.post(f"/v1/fmus/{feedthrough}/runs", json={"stop_time": 1, "start_values": {"a\x00": 1}})
        assert_problem(response, 422, "validation_error")

    def test_an_input_column_beyond_float_is_422(self, client: httpx.Client, feedthrough: str) -> None:
        response = raw_json(client, f"/v1/fmus/{feedthrough}/runs",
                            '{"stop_time": 1, "input": {"time": [0, 1], "real_in": [1e400, 0]}}')
        assert_problem(response, 422, "validation_error")


class TestSweeps:
    def test_a_random_sweep_over_the_whole_float_range_is_422_before_any_hold(
            self, client: httpx.Client, vanderpol: str) -> None:
        before = balance(client)
        response = client.post(f"/v1/fmus/{vanderpol}/sweeps", json={
            "method": "random", "samples": 3, "stop_time": 1,
            "parameters": {"mu": {"min": -1.7e308, "max": 1.7e308}}})
        assert_problem(response, 422, "validation_error")
        assert balance(client) == before

    def test_a_children_cursor_beyond_any_index_is_422(self, client: httpx.Client, vanderpol: str) -> None:
        sweep = client.post(f"/v1/fmus/{vanderpol}/sweeps", json={
            "method": "grid", "stop_time": 1, "parameters": {"mu": [1.0]}})
        assert sweep.status_code == 202, sweep.text
        response = client.get(f"/v1/sweeps/{sweep.json()['id']}/runs", params={"cursor": str(10**23)})
        assert_problem(response, 422, "invalid_cursor")


class TestCursorsAndIds:
    @pytest.mark.parametrize("path", ["/v1/runs", "/v1/sweeps", "/v1/api-keys", "/v1/billing/ledger", "/v1/fmus"])
    def test_a_cursor_containing_nul_is_422(self, client: httpx.Client, path: str) -> None:
        response = client.get(path, params={"cursor": "run_\x00"})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] in ("validation_error", "invalid_cursor")

    @pytest.mark.parametrize("path", ["/v1/runs/run_%00", "/v1/sweeps/swp_%00", "/v1/api-keys/key_%00",
                                      "/v1/runs?fmu_id=fmu_%00", "/v1/billing/ledger?run_id=run_%00"])
    def test_an_id_containing_nul_is_422(self, client: httpx.Client, path: str) -> None:
        assert_problem(client.get(path), 422, "validation_error")
