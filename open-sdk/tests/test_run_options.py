"""``RunOptions``, the keywords of one simulation: the request body they make, the same through every
method that takes them and through both clients; NumPy and pandas values; the deprecated ``outputs=``."""

from __future__ import annotations

import asyncio
import sys

import fake_gateway
import numpy as np
import pandas as pd
import pytest
from fake_gateway import API_KEY, FMU_ID, FakeGateway, Twin

from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient, RunOptions

RUNS = f"/v1/fmus/{FMU_ID}/runs"
SWEEPS = f"/v1/fmus/{FMU_ID}/sweeps"

EVERY_OPTION: RunOptions = {
    "start_values": {"mu": 2.5, "on": True, "mode": 3, "label": "a"}, "start_time": 0.5, "stop_time": 10.0,
    "output_interval": 0.1, "step_size": 1e-3, "relative_tolerance": 1e-6, "solver": "Euler",
    "fmi_type": "ModelExchange", "input": {"time": [0.0, 1.0], "u": [1.0, 2.0]}, "output": ("x0", "x1"),
    "validate": False, "debug_logging": True, "run_timeout": 30.0, "cache": False,
}
#: EVERY_OPTION as the server reads it: fmpy.simulate_fmu's names, the run's limit as timeout_s.
EVERY_FIELD = {
    "start_values": {"mu": 2.5, "on": True, "mode": 3, "label": "a"}, "start_time": 0.5, "stop_time": 10.0,
    "output_interval": 0.1, "step_size": 1e-3, "relative_tolerance": 1e-6, "solver": "Euler",
    "fmi_type": "ModelExchange", "input": {"time": [0.0, 1.0], "u": [1.0, 2.0]}, "output": ["x0", "x1"],
    "validate": False, "debug_logging": True, "timeout_s": 30.0, "cache": False,
}
SWEEP_FIELDS = {"method", "parameters", "samples", "seed"}


def base_run(sweep_body: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in sweep_body.items() if key not in SWEEP_FIELDS}


class TestRunBody:
    def test_every_option_is_sent_under_fmpys_name(self, fake: FakeGateway, twin: Twin) -> None:
        fake.serves_runs()
        twin("runs.create", FMU_ID, **EVERY_OPTION)
        assert fake.body("POST", RUNS) == EVERY_FIELD

    def test_without_options_the_body_is_empty_and_the_server_decides(self, fake: FakeGateway, twin: Twin) -> None:
        fake.serves_runs()
        twin("runs.create", FMU_ID)
        assert fake.body("POST", RUNS) == {}

    def test_none_is_an_option_left_out(self, fake: FakeGateway, twin: Twin) -> None:
        fake.serves_runs()
        twin("runs.create", FMU_ID, stop_time=None, output=None, step_size=None, run_timeout=None, validate=None,
             start_values=None, input=None)
        assert fake.body("POST", RUNS) == {}

    def test_false_flags_are_sent(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.serves_runs()
        client.runs.create(FMU_ID, validate=False, debug_logging=False)
        assert fake.body("POST", RUNS) == {"validate": False, "debug_logging": False}


class TestTheSameOptionsEverywhere:
    @pytest.mark.parametrize("method", ["simulate", "runs.create"])
    def test_a_run_is_the_same_body_from_simulate_and_runs_create(self, fake: FakeGateway, twin: Twin,
                                                                   method: str) -> None:
        fake.serves_runs()
        twin(method, FMU_ID, **EVERY_OPTION)
        assert fake.body("POST", RUNS) == EVERY_FIELD

    @pytest.mark.parametrize("method", ["sweep", "sweeps.create"])
    def test_a_sweeps_base_run_is_the_same_body(self, fake: FakeGateway, twin: Twin, method: str) -> None:
        fake.serves_sweeps()
        extra = {"progress": False} if method == "sweep" else {}
        twin(method, FMU_ID, parameters={"k": [1, 2]}, **extra, **EVERY_OPTION)
        body = fake.body("POST", SWEEPS)
        assert base_run(body) == EVERY_FIELD
        assert body["parameters"] == {"k": [1, 2]} and body["method"] == "grid"


class TestDeprecatedOutputs:
    @pytest.mark.parametrize("method", ["simulate", "runs.create"])
    def test_outputs_is_sent_as_output_with_a_deprecation_warning(self, fake: FakeGateway, twin: Twin,
                                                                   method: str) -> None:
        fake.serves_runs()
        with pytest.warns(DeprecationWarning, match=r"outputs=\) is deprecated: pass output=") as caught:
            twin(method, FMU_ID, outputs=["x0"])
        assert fake.body("POST", RUNS) == {"output": ["x0"]}
        # Attributed to the caller (here the twin's call), not to a line inside the SDK.
        assert [w.filename for w in caught] == [fake_gateway.__file__]

    @pytest.mark.parametrize("method", ["sweep", "sweeps.create"])
    def test_a_sweep_takes_it_too(self, fake: FakeGateway, twin: Twin, method: str) -> None:
        fake.serves_sweeps()
        extra = {"progress": False} if method == "sweep" else {}
        with pytest.warns(DeprecationWarning, match="outputs="):
            twin(method, FMU_ID, parameters={"k": [1]}, outputs=["x0"], **extra)
        assert base_run(fake.body("POST", SWEEPS)) == {"output": ["x0"]}

    def test_the_warning_points_at_the_users_line(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.serves_runs()
        with pytest.warns(DeprecationWarning) as caught:
            line = sys._getframe().f_lineno + 1
            client.simulate(FMU_ID, outputs=["x0"])
        assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]

    def test_the_async_warning_points_at_the_users_line_too(self, fake: FakeGateway) -> None:
        fake.serves_runs()
        lines = []

        async def main() -> None:
            async with AsyncFMUGatewayClient(API_KEY, fake.base_url) as client:
                lines.append(sys._getframe().f_lineno + 1)
                await client.simulate(FMU_ID, outputs=["x0"])

        with pytest.warns(DeprecationWarning) as caught:
            asyncio.run(main())
        assert [(w.filename, w.lineno) for w in caught] == [(__file__, lines[0])]

    def test_output_and_outputs_together_are_refused_before_sending(self, fake: FakeGateway,
                                                                     client: FMUGatewayClient) -> None:
        with pytest.raises(TypeError, match="output= and its deprecated alias outputs="):
            client.simulate(FMU_ID, output=["x0"], outputs=["x1"])
        assert fake.requests() == []


class TestRefusedBeforeSending:
    @pytest.mark.parametrize("method", ["simulate", "runs.create", "sweep", "sweeps.create"])
    def test_a_misspelt_option_is_a_type_error(self, fake: FakeGateway, twin: Twin, method: str) -> None:
        extra = {"parameters": {"k": [1]}} if "sweep" in method else {}
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'stop_tme'"):
            twin(method, FMU_ID, stop_tme=5, **extra)
        assert fake.requests() == []

    def test_output_as_one_string_is_a_type_error(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        with pytest.raises(TypeError, match="list of variable names"):
            client.runs.create(FMU_ID, output="x0")
        assert fake.requests() == []

    def test_input_without_time_is_a_value_error(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        with pytest.raises(ValueError, match="'time' column"):
            client.simulate(FMU_ID, input={"real_in": [1.0]})
        assert fake.requests() == []


FEEDTHROUGH_INPUT = {"time": [0.0, 0.5, 1.0], "real_in": [1.0, 2.0, 3.0], "int_in": [1, 2, 3],
                     "bool_in": [False, True, False]}


def structured_input() -> np.ndarray:
    dtype = [("time", float), ("real_in", float), ("int_in", np.int32), ("bool_in", bool)]
    return np.array(list(zip(*FEEDTHROUGH_INPUT.values(), strict=True)), dtype=dtype)


INPUT_FORMS = {
    "dict of lists": lambda: FEEDTHROUGH_INPUT,
    "dict of numpy arrays": lambda: {k: np.asarray(v) for k, v in FEEDTHROUGH_INPUT.items()},
    "structured array": structured_input,
    "DataFrame": lambda: pd.DataFrame(FEEDTHROUGH_INPUT),
    "DataFrame indexed by time": lambda: pd.DataFrame(FEEDTHROUGH_INPUT).set_index("time"),
}


class TestNumpyAndPandas:
    @pytest.mark.parametrize("form", list(INPUT_FORMS))
    def test_an_input_table_becomes_json_columns_of_the_same_types(self, fake: FakeGateway, twin: Twin,
                                                                   form: str) -> None:
        fake.serves_runs()
        twin("runs.create", FMU_ID, input=INPUT_FORMS[form]())
        sent = fake.body("POST", RUNS)["input"]
        assert sent == FEEDTHROUGH_INPUT
        assert [type(v) for v in sent["int_in"]] == [int] * 3 and [type(v) for v in sent["bool_in"]] == [bool] * 3

    def test_numpy_scalars_become_plain_values(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.serves_runs()
        client.runs.create(FMU_ID, start_values={"mu": np.float64(1.5), "n": np.int32(2), "on": np.bool_(True)},
                           stop_time=np.float64(2.0), step_size=np.float32(0.5), validate=np.bool_(False))
        assert fake.body("POST", RUNS) == {"start_values": {"mu": 1.5, "n": 2, "on": True}, "stop_time": 2.0,
                                           "step_size": 0.5, "validate": False}

    def test_a_column_that_is_not_a_sequence_is_refused(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        with pytest.raises(TypeError, match="sequence of values"):
            client.runs.create(FMU_ID, input={"time": "0,1"})
        with pytest.raises(TypeError, match="dict of columns"):
            client.runs.create(FMU_ID, input=[0.0, 1.0])
        assert fake.requests() == []


class TestSweepSpace:
    def test_grid_values_and_ranges_from_numpy_and_tuples(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.serves_sweeps()
        client.sweeps.create(FMU_ID, method="sobol", samples=np.int64(8), seed=np.int64(3),
                             parameters={"mu": (np.float64(0.5), 2), "x0": {"min": 0, "max": np.float32(1.5)}})
        assert fake.body("POST", SWEEPS) == {"method": "sobol", "samples": 8, "seed": 3,
                                             "parameters": {"mu": {"min": 0.5, "max": 2},
                                                            "x0": {"min": 0, "max": 1.5}}}

    def test_a_grid_of_arrays_and_a_list_of_samples(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.serves_sweeps()
        client.sweeps.create(FMU_ID, parameters={"mu": np.array([0.5, 1.0]), "n": [1, 2]}, stop_time=1)
        client.sweeps.create(FMU_ID, method="list", parameters=[{"mu": np.float64(0.5)}, {"mu": 2, "on": True}])
        grid, listed = fake.bodies("POST", SWEEPS)
        assert grid == {"method": "grid", "parameters": {"mu": [0.5, 1.0], "n": [1, 2]}, "stop_time": 1}
        assert listed == {"method": "list", "parameters": [{"mu": 0.5}, {"mu": 2, "on": True}]}
