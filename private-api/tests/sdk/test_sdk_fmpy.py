"""``from fmu_gateway_sdk import fmpy``: ``simulate_fmu`` through the gateway returns what the real
``fmpy.simulate_fmu`` returns on the same FMU, field by field; the FMU is uploaded once; what only
works locally is refused; the rest is the real FMPy's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fmpy as real_fmpy
import numpy as np
import pytest
from fmu_gateway_sdk import FMUGatewayClient
from fmu_gateway_sdk import fmpy as gateway_fmpy
from gateway_process import Gateway
from sdk_support import count_requests

UPLOADS = r"/v1/fmus"


@pytest.fixture(scope="module")
def user_key(gateway: Gateway) -> str:
    """This module's user (one: making a user takes a while)."""
    return gateway.create_user(credits=10_000)


@pytest.fixture
def fmpy_client(gateway: Gateway, user_key: str) -> Iterator[FMUGatewayClient]:
    """The client ``gateway_fmpy.simulate_fmu`` uses during the test."""
    with FMUGatewayClient(user_key, gateway.base_url) as client:
        gateway_fmpy.use_client(client)
        try:
            yield client
        finally:
            gateway_fmpy.use_client(None)


def assert_same_as_fmpy(remote: np.ndarray, local: np.ndarray) -> None:
    assert remote.dtype.names == local.dtype.names
    assert remote.dtype == local.dtype
    assert len(remote) == len(local)
    for name in local.dtype.names:
        np.testing.assert_allclose(remote[name], local[name], rtol=1e-9, atol=0, err_msg=name)


def both(path: Path, **arguments: Any) -> tuple[np.ndarray, np.ndarray]:
    return gateway_fmpy.simulate_fmu(str(path), **arguments), real_fmpy.simulate_fmu(str(path), **arguments)


@pytest.mark.usefixtures("fmpy_client")
class TestSimulateFmu:
    def test_defaults_equal_fmpy(self, model_files: dict[str, Path]) -> None:
        remote, local = both(model_files["VanDerPol"])
        assert_same_as_fmpy(remote, local)
        assert isinstance(remote, real_fmpy.simulation.SimulationResult)
        assert remote.modelDescription.modelName == "VanDerPol"

    def test_start_values_stop_time_output_interval_and_output_equal_fmpy(self, model_files: dict[str, Path]) -> None:
        assert_same_as_fmpy(*both(model_files["VanDerPol"], start_values={"mu": 2.5}, stop_time=5,
                                  output_interval=0.01, output=["x1"]))

    def test_model_exchange_with_euler_and_a_step_size_equals_fmpy(self, model_files: dict[str, Path]) -> None:
        assert_same_as_fmpy(*both(model_files["VanDerPol"], fmi_type="ModelExchange", solver="Euler",
                                  step_size=1e-3, stop_time=2, output_interval=0.01))

    def test_relative_tolerance_equals_fmpy(self, model_files: dict[str, Path]) -> None:
        assert_same_as_fmpy(*both(model_files["VanDerPol"], fmi_type="ModelExchange", relative_tolerance=1e-7,
                                  stop_time=3))

    def test_an_input_structured_array_equals_fmpy(self, model_files: dict[str, Path]) -> None:
        signal = np.array([(0.0, 1.0, 1, False), (0.5, 2.0, 2, True), (1.0, 3.0, 3, False)],
                          dtype=[("time", float), ("real_in", float), ("int_in", np.int32), ("bool_in", bool)])
        remote, local = both(model_files["Feedthrough"], input=signal, start_values={"gain": 2.0}, stop_time=1,
                             output_interval=0.1)
        assert_same_as_fmpy(remote, local)
        assert remote["real_out"].max() > 1.0  # the signal reached the model

    def test_positional_arguments_are_fmpys(self, model_files: dict[str, Path]) -> None:
        path = str(model_files["VanDerPol"])
        assert_same_as_fmpy(gateway_fmpy.simulate_fmu(path, True, 0.0, 2.0),
                            real_fmpy.simulate_fmu(path, True, 0.0, 2.0))

    def test_solver_and_step_size_are_ignored_for_co_simulation_as_in_fmpy(self,
                                                                           model_files: dict[str, Path]) -> None:
        assert_same_as_fmpy(*both(model_files["VanDerPol"], solver="Euler", step_size=0.5, stop_time=2))

    def test_the_second_call_does_not_upload_again(self, gateway: Gateway, fmpy_client: FMUGatewayClient,
                                                   model_files: dict[str, Path]) -> None:
        first = gateway_fmpy.simulate_fmu(str(model_files["BouncingBall3"]), stop_time=1)
        uploads = count_requests(gateway, "POST", UPLOADS)
        second = gateway_fmpy.simulate_fmu(model_files["BouncingBall3"], stop_time=1)
        assert count_requests(gateway, "POST", UPLOADS) == uploads
        assert [f.model_name for f in fmpy_client.fmus.list()].count("BouncingBall3") == 1
        np.testing.assert_array_equal(first, second)

    def test_an_uploaded_fmus_id_works_like_its_file(self, fmpy_client: FMUGatewayClient,
                                                     model_files: dict[str, Path]) -> None:
        fmu = fmpy_client.fmus.upload(model_files["VanDerPol"])
        by_id = gateway_fmpy.simulate_fmu(fmu.id, stop_time=1)
        np.testing.assert_array_equal(by_id, gateway_fmpy.simulate_fmu(str(model_files["VanDerPol"]), stop_time=1))


class TestRefused:
    @pytest.mark.parametrize(("name", "value"), [
        ("fmu_instance", object()), ("step_finished", lambda time, recorder: True), ("logger", print),
        ("fmi_call_logger", print), ("model_description", object()), ("record_events", False),
        ("remote_platform", "win64"), ("early_return_allowed", True), ("fmu_state", b"state"),
        ("initialize", False), ("visible", True),
    ])
    def test_a_local_only_argument_raises_before_any_request(self, gateway: Gateway, name: str, value: Any,
                                                             model_files: dict[str, Path]) -> None:
        before = count_requests(gateway, "GET", UPLOADS)
        with pytest.raises(TypeError, match=f"{name}=.*not supported remotely"):
            gateway_fmpy.simulate_fmu(str(model_files["VanDerPol"]), **{name: value})
        assert count_requests(gateway, "GET", UPLOADS) == before

    def test_their_defaults_are_accepted(self, fmpy_client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        result = gateway_fmpy.simulate_fmu(str(model_files["VanDerPol"]), stop_time=1, record_events=True,
                                           remote_platform=None, fmu_instance=None, initialize=True)
        assert result.dtype.names == ("time", "x0", "x1")


class TestTheClient:
    def test_the_default_client_comes_from_the_environment(self, gateway: Gateway, user_key: str,
                                                           model_files: dict[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FMU_GATEWAY_API_KEY", user_key)
        monkeypatch.setenv("FMU_GATEWAY_URL", gateway.base_url)
        gateway_fmpy.use_client(None)
        try:
            result = gateway_fmpy.simulate_fmu(str(model_files["VanDerPol"]), stop_time=1)
        finally:
            gateway_fmpy.use_client(None)
        assert len(result) > 1

    def test_client_keyword_overrides_the_module_client(self, gateway: Gateway, user_key: str,
                                                        model_files: dict[str, Path]) -> None:
        gateway_fmpy.use_client(FMUGatewayClient("fmu_wrong_key", gateway.base_url))
        try:
            with FMUGatewayClient(user_key, gateway.base_url) as client:
                result = gateway_fmpy.simulate_fmu(str(model_files["VanDerPol"]), stop_time=1, client=client)
        finally:
            gateway_fmpy.use_client(None)
        assert len(result) > 1


class TestTheRestIsFmpys:
    def test_read_model_description_is_fmpys_and_makes_no_request(self, gateway: Gateway,
                                                                  model_files: dict[str, Path]) -> None:
        before = gateway.log_path.read_text(errors="replace").count("HTTP/1.1\"")
        path = str(model_files["Feedthrough"])
        ours, theirs = gateway_fmpy.read_model_description(path), real_fmpy.read_model_description(path)
        assert type(ours) is type(theirs)
        assert (ours.modelName, ours.guid, ours.fmiVersion) == (theirs.modelName, theirs.guid, theirs.fmiVersion)
        assert [(v.name, v.causality, v.type, v.start) for v in ours.modelVariables] == \
               [(v.name, v.causality, v.type, v.start) for v in theirs.modelVariables]
        assert gateway.log_path.read_text(errors="replace").count("HTTP/1.1\"") == before

    def test_other_names_are_the_real_fmpys(self) -> None:
        assert gateway_fmpy.plot_result is real_fmpy.util.plot_result
        assert gateway_fmpy.dump is real_fmpy.dump
        assert gateway_fmpy.util is real_fmpy.util
        assert gateway_fmpy.extract is real_fmpy.extract
        with pytest.raises(AttributeError):
            _ = gateway_fmpy.no_such_thing
