"""``client.fmus``: upload (hash first, never send known bytes twice), list, get, variables, delete."""

from __future__ import annotations

import asyncio
import hashlib
import zipfile
from pathlib import Path

import pytest
from fmu_gateway_sdk import AsyncFMUGatewayClient, Fmu, FMUGatewayClient, FmuSummary, NotFoundError
from gateway_process import Gateway
from sdk_support import count_requests, has_parameter, require_server_feature

UPLOAD_PATH = "/v1/fmus"


def uploads(gateway: Gateway) -> int:
    return count_requests(gateway, "POST", UPLOAD_PATH)


class TestUpload:
    def test_upload_returns_the_fmu_with_its_variables(self, client: FMUGatewayClient,
                                                       model_files: dict[str, Path]) -> None:
        path = model_files["VanDerPol"]
        fmu = client.fmus.upload(path)
        assert isinstance(fmu, Fmu)
        assert fmu.model_name == "VanDerPol"
        assert fmu.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert fmu.filename == "VanDerPol.fmu"
        assert fmu.supports_co_simulation and fmu.supports_model_exchange
        assert [p.name for p in fmu.parameters] == ["mu"]
        assert {v.name for v in fmu.variables} >= {"x0", "x1", "mu"}
        assert fmu.variable("mu").causality == "parameter"
        assert fmu.request_id and fmu.request_id.startswith("req_")

    def test_second_upload_of_the_same_bytes_sends_nothing(self, gateway: Gateway, fresh_key: str,
                                                          model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            before = uploads(gateway)
            first = client.fmus.upload(model_files["Feedthrough"])
            assert uploads(gateway) == before + 1
            second = client.fmus.upload(model_files["Feedthrough"])
            assert uploads(gateway) == before + 1, "the second upload sent the file again"
            assert second.id == first.id
            assert second.variables == first.variables

    def test_simulating_a_known_file_uploads_and_fetches_nothing(self, gateway: Gateway, fresh_key: str,
                                                                 model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            fmu = client.fmus.upload(model_files["VanDerPol"])
            before = uploads(gateway), count_requests(gateway, "GET", f"/v1/fmus/{fmu.id}")
            result = client.simulate(model_files["VanDerPol"], stop_time=0.1)
            assert (uploads(gateway), count_requests(gateway, "GET", f"/v1/fmus/{fmu.id}")) == before
            assert result.run.fmu_id == fmu.id

    def test_another_user_uploading_the_same_bytes_gets_an_fmu_of_their_own(
            self, gateway: Gateway, client: FMUGatewayClient, fresh_key: str, model_files: dict[str, Path]) -> None:
        mine = client.fmus.upload(model_files["VanDerPol"])
        before = uploads(gateway)
        with FMUGatewayClient(fresh_key, gateway.base_url) as other:
            theirs = other.fmus.upload(model_files["VanDerPol"])
        assert uploads(gateway) == before + 1
        assert theirs.id != mine.id and theirs.sha256 == mine.sha256

    def test_upload_with_a_progress_bar(self, gateway: Gateway, fresh_key: str, model_files: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            fmu = client.fmus.upload(model_files["BouncingBall3"], progress=True)
        assert fmu.model_name == "BouncingBall3"
        assert capsys.readouterr().out == "", "the progress bar belongs on stderr"

    def test_upload_of_a_missing_file_is_file_not_found(self, client: FMUGatewayClient, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            client.fmus.upload(tmp_path / "nothing.fmu")


class TestFind:
    def test_find_returns_the_fmu_with_those_bytes(self, gateway: Gateway, fresh_key: str,
                                                   model_files: dict[str, Path]) -> None:
        require_server_feature(has_parameter(gateway, "get", "/v1/fmus", "sha256"),
                               "the GET /v1/fmus?sha256= filter")
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            vdp = client.fmus.upload(model_files["VanDerPol"])
            client.fmus.upload(model_files["Feedthrough"])
            found = client.fmus.find(vdp.sha256)
            assert found is not None and found.id == vdp.id
            assert client.fmus.find(hashlib.sha256(b"never uploaded").hexdigest()) is None


class TestList:
    def test_list_pages_through_every_fmu_newest_first(self, gateway: Gateway, fresh_key: str,
                                                       model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            uploaded = [client.fmus.upload(model_files[name]) for name in ("VanDerPol", "Feedthrough", "Hostile")]
            pages_before = count_requests(gateway, "GET", "/v1/fmus")
            listed = list(client.fmus.list(page_size=2))
            assert count_requests(gateway, "GET", "/v1/fmus") == pages_before + 2
        assert all(isinstance(f, FmuSummary) for f in listed)
        assert [f.id for f in listed] == [f.id for f in reversed(uploaded)]

    def test_list_is_lazy(self, gateway: Gateway, client: FMUGatewayClient) -> None:
        before = count_requests(gateway, "GET", "/v1/fmus")
        iterator = client.fmus.list()
        assert count_requests(gateway, "GET", "/v1/fmus") == before
        next(iterator, None)
        assert count_requests(gateway, "GET", "/v1/fmus") == before + 1


class TestGetAndDelete:
    def test_get_by_id_or_object(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        fmu = client.fmus.upload(model_files["Feedthrough"])
        assert client.fmus.get(fmu.id) == fmu
        assert client.fmus.get(fmu).id == fmu.id

    def test_deleted_fmu_is_gone(self, gateway: Gateway, fresh_key: str, model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            fmu = client.fmus.upload(model_files["VanDerPol"])
            client.fmus.delete(fmu)
            with pytest.raises(NotFoundError) as caught:
                client.fmus.get(fmu.id)
            assert caught.value.code == "not_found"
            assert fmu.id not in {f.id for f in client.fmus.list()}


def with_variables(fmu: Path, count: int, dest: Path) -> Path:
    """``fmu`` (FMI 2) declaring ``count`` more variables after its own: extra0 ("Extra 0"), ..."""
    with zipfile.ZipFile(fmu) as source, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "modelDescription.xml":
                extra = "".join(f'<ScalarVariable name="extra{i}" valueReference="{1000 + i}" '
                                f'description="Extra {i}"><Real/></ScalarVariable>' for i in range(count))
                data = data.replace(b"</ModelVariables>", extra.encode() + b"</ModelVariables>")
            target.writestr(info, data)
    return dest


@pytest.fixture(scope="module")
def large(model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VanDerPol with 1,200 more variables: more than an FMU's own response carries."""
    return with_variables(model_files["VanDerPol"], 1200, tmp_path_factory.mktemp("large") / "Large.fmu")


class TestVariables:
    def test_a_large_model_comes_with_its_first_variables_and_pages_the_rest(
            self, gateway: Gateway, fresh_key: str, large: Path) -> None:
        require_server_feature(has_parameter(gateway, "GET", "/v1/fmus/{fmu_id}/variables", "q"),
                               "GET /v1/fmus/{id}/variables")
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            fmu = client.fmus.upload(large)
            everything = list(client.fmus.variables(fmu, page_size=500))

            assert fmu.variable_count == len(everything) > 1200
            assert len(fmu.variables) == 1000 and not fmu.variables_complete
            assert [v.name for v in everything[:1000]] == [v.name for v in fmu.variables]
            assert everything[-1].name == "extra1199" and everything[-1].description == "Extra 1199"
            with pytest.raises(KeyError, match=r"client\.fmus\.variables"):
                fmu.variable("extra1199")
            assert [v.name for v in client.fmus.variables(fmu.id, q="EXTRA 119")] == [
                "extra119", *(f"extra{i}" for i in range(1190, 1200))]
            assert next(iter(client.fmus.list())).variable_count == fmu.variable_count

    def test_a_small_model_has_all_its_variables(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        fmu = client.fmus.upload(model_files["VanDerPol"])
        assert fmu.variables_complete
        assert [v.name for v in client.fmus.variables(fmu)] == [v.name for v in fmu.variables]

    def test_the_async_client_pages_the_same_variables(self, gateway: Gateway, fresh_key: str, large: Path) -> None:
        require_server_feature(has_parameter(gateway, "GET", "/v1/fmus/{fmu_id}/variables", "q"),
                               "GET /v1/fmus/{id}/variables")

        async def scenario() -> tuple[list[str], list[str]]:
            async with AsyncFMUGatewayClient(fresh_key, gateway.base_url) as client:
                fmu = await client.fmus.upload(large)
                return ([v.name async for v in client.fmus.variables(fmu, page_size=700)],
                        [v.name async for v in client.fmus.variables(fmu, q="extra 5")])

        names, matched = asyncio.run(scenario())
        assert names[-1] == "extra1199" and len(names) > 1200
        assert matched == ["extra5", *(f"extra{i}" for i in range(50, 60)), *(f"extra{i}" for i in range(500, 600))]
