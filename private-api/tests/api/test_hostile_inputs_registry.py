"""Hostile uploads against the registry, through real gateways on SQLite and PostgreSQL: model
descriptions too large to hold (variables, stored metadata), archives that are small but expand
far, failed uploads that must leave nothing behind, and the timing of cross-tenant deduplication."""

from __future__ import annotations

import hashlib
import io
import random
import re
import shutil
import statistics
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from databases import BACKENDS, temporary_database
from fmus.variants import model_description, with_variables
from gateway_process import Gateway, new_var_dir, start_gateway, stop_gateway
from problems import assert_problem

from app.billing.pricing import load_pricing

FREE = load_pricing().tier("free")
# The capped gateway's limits: small, so hostile models stay small too.
MAX_VARIABLES = 2000
MAX_MODEL_INFO_BYTES = 256 << 10
DETAIL_MAX_VARIABLES = 1000  # app.fmus.schemas: the most variables an FMU's own response carries


@pytest.fixture(scope="module", params=BACKENDS)
def capped(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    var_dir = new_var_dir("capped")
    try:
        with temporary_database(request.param, var_dir) as database_url:
            gateway = start_gateway(var_dir, FMU_GATEWAY_DATABASE_URL=database_url,
                                    FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0", FMU_GATEWAY_WARM_SANDBOXES="0",
                                    FMU_GATEWAY_MAX_MODEL_VARIABLES=str(MAX_VARIABLES),
                                    FMU_GATEWAY_MAX_MODEL_INFO_BYTES=str(MAX_MODEL_INFO_BYTES))
            try:
                yield gateway
            finally:
                stop_gateway(gateway)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def user(gateway: Gateway, tier: str | None = None) -> httpx.Client:
    return gateway.client(gateway.create_user(tier=tier))


def upload(client: httpx.Client, data: bytes, name: str = "m.fmu") -> httpx.Response:
    return client.post("/v1/fmus", content=data, params={"filename": name},
                       headers={"Content-Type": "application/octet-stream"})


def own_variables(fmu: Path) -> list[str]:
    return re.findall(r'<ScalarVariable[^>]*?name="([^"]+)"', model_description(fmu).decode())


def expanding_fmu(fmu: Path, member_bytes: int) -> bytes:
    """``fmu`` plus one member of ``member_bytes`` that deflates ~185-fold (under the ratio cap): a
    few KiB of noise per MiB of zeros."""
    out = io.BytesIO(fmu.read_bytes())
    noise = random.Random(7)
    with zipfile.ZipFile(out, "a") as archive:
        info = zipfile.ZipInfo("resources/table.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(member_bytes >> 20):
                member.write(noise.randbytes(4000) + bytes((1 << 20) - 4000))
    return out.getvalue()


def variant(data: bytes, tag: str) -> bytes:
    """Other bytes (another sha256) for the same FMU."""
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("resources/variant.txt", tag)
    return out.getvalue()


def extracted_tree(gateway: Gateway, data: bytes) -> Path:
    return gateway.var_dir / "cache" / "fmus" / hashlib.sha256(data).hexdigest()


def blob(gateway: Gateway, data: bytes) -> Path:
    sha256 = hashlib.sha256(data).hexdigest()
    return gateway.var_dir / "storage" / "fmus" / sha256[:2] / f"{sha256}.fmu"


def execute(gateway: Gateway, sql: str, **params: object) -> None:
    engine = sa.create_engine(gateway.env["FMU_GATEWAY_DATABASE_URL"])
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(sql), params)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def big_fmu(fmus: dict[str, Path]) -> bytes:
    """1,500 variables beyond VanDerPol's own, every tenth with a description mentioning 'Gain'."""
    return with_variables(fmus["VanDerPol"], 1500)


@pytest.fixture(scope="module")
def expanding(fmus: dict[str, Path]) -> bytes:
    """~1.4 MB that extracts to 256 MiB."""
    data = expanding_fmu(fmus["VanDerPol"], 256 << 20)
    assert len(data) < 2 << 20
    return data


class TestVariableCap:
    def test_an_fmu_with_more_variables_than_the_cap_is_413_and_stores_nothing(
            self, capped: Gateway, fmus: dict[str, Path]) -> None:
        client = user(capped)
        data = with_variables(fmus["VanDerPol"], MAX_VARIABLES)

        body = assert_problem(upload(client, data), 413, "too_many_variables")

        assert body["limit"] == MAX_VARIABLES
        assert client.get("/v1/fmus").json()["data"] == []
        assert not extracted_tree(capped, data).exists() and not blob(capped, data).exists()

    def test_220k_variables_under_the_default_cap_are_refused_quickly(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = user(gateway)
        data = with_variables(fmus["VanDerPol"], 220_000, aliases=True)  # ~16 MB of XML, under its cap
        started = time.monotonic()

        response = upload(client, data)

        assert_problem(response, 413, "too_many_variables")
        # Accepting it took ~6 s of CPU; counting up to the cap takes a fraction of a second.
        assert time.monotonic() - started < 3

    def test_model_information_larger_than_the_stored_cap_is_413(self, capped: Gateway,
                                                                  fmus: dict[str, Path]) -> None:
        client = user(capped)
        data = with_variables(fmus["VanDerPol"], 500, description="x" * 1000)  # ~500 KB of JSON

        body = assert_problem(upload(client, data), 413, "model_info_too_large")

        assert body["limit"] == MAX_MODEL_INFO_BYTES
        assert client.get("/v1/fmus").json()["data"] == []


class TestBoundedResponses:
    def test_the_list_is_built_from_summary_columns_without_reading_variables(
            self, capped: Gateway, fmus: dict[str, Path], big_fmu: bytes) -> None:
        client = user(capped)
        created = upload(client, big_fmu).json()
        # Were the list to parse model_info, this row would now fail it.
        execute(capped, "UPDATE fmus SET model_info = '{}' WHERE id = :id", id=created["id"])

        response = client.get("/v1/fmus")

        assert response.status_code == 200, response.text
        (listed,) = response.json()["data"]
        assert listed["variable_count"] == len(own_variables(fmus["VanDerPol"])) + 1500
        assert listed["default_experiment"] == created["default_experiment"]
        assert listed["platforms"] == created["platforms"] != []
        assert "variables" not in listed

    def test_an_fmus_own_response_holds_its_first_variables_and_their_count(
            self, capped: Gateway, fmus: dict[str, Path], big_fmu: bytes) -> None:
        client = user(capped)
        total = len(own_variables(fmus["VanDerPol"])) + 1500

        for response in (created := upload(client, big_fmu), client.get(f"/v1/fmus/{created.json()['id']}")):
            body = response.json()
            assert body["variable_count"] == total
            assert [v["name"] for v in body["variables"]] == (
                own_variables(fmus["VanDerPol"]) + [f"p{i}" for i in range(1500)])[:DETAIL_MAX_VARIABLES]


@pytest.fixture(scope="module")
def described(capped: Gateway, fmus: dict[str, Path]) -> tuple[httpx.Client, str]:
    """A user and an FMU of theirs with 30 extra variables, p7 described as "Loop GAIN 7"."""
    client = user(capped)
    response = upload(client, with_variables(fmus["VanDerPol"], 30, description="Loop GAIN "))
    assert response.status_code == 201, response.text
    return client, response.json()["id"]


class TestVariablePages:
    def pages(self, client: httpx.Client, fmu_id: str, **params: object) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        cursor = None
        while True:
            response = client.get(f"/v1/fmus/{fmu_id}/variables", params={**params, "cursor": cursor})
            assert response.status_code == 200, response.text
            body = response.json()
            out += body["data"]
            if not body["has_more"]:
                assert body["next_cursor"] is None
                return out
            assert len(body["data"]) == params["limit"]
            cursor = body["next_cursor"]

    def test_pages_walk_every_variable_in_model_order(self, described: tuple[httpx.Client, str],
                                                      fmus: dict[str, Path]) -> None:
        client, fmu_id = described

        names = [v["name"] for v in self.pages(client, fmu_id, limit=7)]

        assert names == own_variables(fmus["VanDerPol"]) + [f"p{i}" for i in range(30)]

    def test_q_matches_names_and_descriptions_in_any_case(self, described: tuple[httpx.Client, str]) -> None:
        client, fmu_id = described

        by_description = [v["name"] for v in self.pages(client, fmu_id, limit=4, q="gain 1")]
        by_name = [v["name"] for v in self.pages(client, fmu_id, limit=100, q="P2")]

        assert by_description == ["p1"] + [f"p{i}" for i in range(10, 20)]
        assert by_name == ["p2"] + [f"p{i}" for i in range(20, 30)]
        assert self.pages(client, fmu_id, limit=5, q="no such variable") == []

    @pytest.mark.parametrize("cursor", ["abc", "-1", "1" * 24])
    def test_a_malformed_cursor_is_422(self, described: tuple[httpx.Client, str], cursor: str) -> None:
        client, fmu_id = described

        assert_problem(client.get(f"/v1/fmus/{fmu_id}/variables", params={"cursor": cursor}),
                       422, "validation_error")

    def test_someone_elses_fmus_variables_are_404(self, capped: Gateway,
                                                  described: tuple[httpx.Client, str]) -> None:
        owner, fmu_id = described
        assert owner.get(f"/v1/fmus/{fmu_id}/variables").status_code == 200

        assert_problem(user(capped).get(f"/v1/fmus/{fmu_id}/variables"), 404, "not_found")


class TestQuotaByStoredBytes:
    def test_a_small_archive_that_expands_past_the_quota_is_refused_before_extraction(
            self, gateway: Gateway, fmus: dict[str, Path], expanding: bytes) -> None:
        client = user(gateway)
        first = upload(client, fmus["Feedthrough"].read_bytes()).json()
        # Stands in for earlier uploads: 100 MiB left, room for the archive but not for its extraction.
        execute(gateway, "UPDATE fmus SET size = :size WHERE id = :id",
                size=FREE.storage_quota_bytes - (100 << 20), id=first["id"])

        body = assert_problem(upload(client, expanding), 413, "storage_quota_exceeded")

        assert body["fmu_bytes"] == len(expanding) + (256 << 20) + sum(
            info.file_size for info in zipfile.ZipFile(fmus["VanDerPol"]).infolist())
        assert not extracted_tree(gateway, expanding).exists() and not blob(gateway, expanding).exists()
        assert [f["id"] for f in client.get("/v1/fmus").json()["data"]] == [first["id"]]

    def test_a_failed_upload_removes_its_extracted_tree_and_its_row(self, capped: Gateway,
                                                                     fmus: dict[str, Path]) -> None:
        client = user(capped)
        data = variant(fmus["VanDerPol"].read_bytes(), uuid.uuid4().hex)
        while (blocked := blob(capped, data).parent).exists():  # a prefix no stored FMU uses yet
            data = variant(fmus["VanDerPol"].read_bytes(), uuid.uuid4().hex)
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_bytes(b"")  # a file where the blob's directory goes: storing the blob fails
        try:
            response = upload(client, data)
        finally:
            blocked.unlink()

        assert response.status_code == 500
        assert not extracted_tree(capped, data).exists()
        assert list(extracted_tree(capped, data).parent.glob(".*.partial")) == []
        assert client.get("/v1/fmus").json()["data"] == []
        assert upload(client, data).status_code == 201


class TestCrossTenantDeduplication:
    def test_bytes_another_user_uploaded_take_as_long_as_new_ones(self, gateway: Gateway,
                                                                  expanding: bytes) -> None:
        first, second = user(gateway, tier="pro"), user(gateway, tier="pro")
        new, known = [], []
        for round_ in range(3):
            data = variant(expanding, f"{round_}-{uuid.uuid4().hex}")
            started = time.monotonic()
            assert upload(first, data).status_code == 201
            new.append(time.monotonic() - started)
            started = time.monotonic()
            assert upload(second, data).status_code == 201
            known.append(time.monotonic() - started)

        # Skipping the extraction made the second upload ~30x faster than the first.
        assert statistics.median(known) > 0.5 * statistics.median(new), (new, known)
