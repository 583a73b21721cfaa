"""The run spec (``app.sandbox.runner.RunSpec``): FMPy's own arguments, a versioned wire form that
still reads what the release before stored, and every field reaching ``fmpy.simulate_fmu``.

The runner's ``simulate`` runs here in-process against FMPy given the same arguments the way a
user of FMPy would; a few specs also go through a real sandbox."""

from __future__ import annotations

import dataclasses
import inspect
import zipfile
from pathlib import Path
from typing import Any

import fmpy
import numpy as np
import pytest
from fmus.variants import model_description, rewritten

from app.runs.schemas import RunCreate
from app.sandbox import SandboxBackend
from app.sandbox.runner import (
    SIMULATE_FMU_ARGUMENTS,
    SPEC_VERSION,
    JobFailed,
    RunSpec,
    SweepChunk,
    read_job,
    simulate,
)

from .conftest import Finished, run_once

HOST_FIELDS = ("input_types", "timeout_s")
# A run spec exactly as the release before stored it (runs.spec): no version, "outputs".
VERSION_1 = {"fmi_type": "ModelExchange", "start_time": 0.0, "stop_time": 3.0, "output_interval": 0.05,
             "solver": "CVode", "relative_tolerance": 1e-6, "start_values": {"mu": 1.5}, "input": None,
             "input_types": {}, "outputs": ["x1"], "timeout_s": 30.0}


def assert_same(result: np.ndarray, expected: np.ndarray) -> None:
    assert result.dtype.names == expected.dtype.names
    assert len(result) == len(expected)
    for name in expected.dtype.names or ():
        np.testing.assert_array_equal(result[name], expected[name], err_msg=name)


def undefined_unit_dir(fmus: dict[str, Path], tmp_path: Path) -> Path:
    """VanDerPol whose parameter mu names a unit the model description never defines: FMPy's
    validation refuses it; the model itself runs as ever."""
    xml = model_description(fmus["VanDerPol"]).replace(b'<Real start="1"/>', b'<Real start="1" unit="furlong"/>', 1)
    archive = tmp_path / "undefined_unit.fmu"
    archive.write_bytes(rewritten(fmus["VanDerPol"], xml=xml))
    target = tmp_path / "undefined_unit"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target)
    target.chmod(0o755)
    return target


class TestFields:
    def test_every_field_is_a_simulate_fmu_argument_or_the_hosts(self) -> None:
        names = tuple(f.name for f in dataclasses.fields(RunSpec))
        assert names == (*SIMULATE_FMU_ARGUMENTS, *HOST_FIELDS)
        parameters = list(inspect.signature(fmpy.simulate_fmu).parameters)
        assert set(SIMULATE_FMU_ARGUMENTS) <= set(parameters)
        # Declared in simulate_fmu's order.
        assert sorted(SIMULATE_FMU_ARGUMENTS, key=parameters.index) == list(SIMULATE_FMU_ARGUMENTS)

    def test_its_defaults_are_simulate_fmus(self) -> None:
        defaults = {name: p.default for name, p in inspect.signature(fmpy.simulate_fmu).parameters.items()}
        assert {name: getattr(RunSpec(), name) for name in SIMULATE_FMU_ARGUMENTS} == {
            name: defaults[name] for name in SIMULATE_FMU_ARGUMENTS}

    def test_the_request_has_every_field_the_host_does_not_fill_in(self) -> None:
        request = {field.alias or name for name, field in RunCreate.model_fields.items()}
        # outputs: the deprecated alias; cache: the server's choice, never the runner's.
        assert request == (set(SIMULATE_FMU_ARGUMENTS) | {"timeout_s"}) | {"outputs", "cache"}


class TestWireForm:
    def test_round_trip_is_versioned(self) -> None:
        spec = RunSpec(validate=False, stop_time=2.0, solver="Euler", step_size=0.01, fmi_type="ModelExchange",
                       start_values={"mu": 2.0}, output=["x0"], debug_logging=True, timeout_s=5.0)
        wire = spec.to_wire()
        assert wire["version"] == SPEC_VERSION == 2
        assert wire["output"] == ["x0"] and "outputs" not in wire
        assert RunSpec.from_wire(wire) == spec

    def test_a_spec_stored_by_the_release_before_still_reads(self) -> None:
        spec = RunSpec.from_wire(VERSION_1)
        assert spec.output == ["x1"]
        assert (spec.validate, spec.debug_logging, spec.step_size) == (True, False, None)
        assert spec.to_wire() == {"version": 2, **{k: v for k, v in VERSION_1.items() if k != "outputs"},
                                  "output": ["x1"], "validate": True, "step_size": None, "debug_logging": False}

    def test_null_stands_for_the_default(self) -> None:
        assert RunSpec.from_wire({"version": 2, "solver": None, "start_values": None, "validate": None}) == RunSpec()

    @pytest.mark.parametrize("wire", [
        {"version": 3}, {"version": 0}, {"version": "2"}, {"version": True},
        {"version": 2, "outputs": ["x0"]},  # the alias is version 1's only
        {"version": 2, "stop_tim": 1.0},
        {"outputs": ["x0"], "output": ["x1"]},
    ], ids=["newer", "zero", "text", "bool", "v2-outputs", "typo", "v1-both"])
    def test_a_spec_it_cannot_read_is_refused(self, wire: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            RunSpec.from_wire(wire)

    def test_a_sweep_chunk_round_trips(self) -> None:
        chunk = SweepChunk((("run_a", RunSpec(start_values={"mu": 1.0})), ("run_b", RunSpec(output=["x0"]))), True)
        wire = chunk.to_wire()
        assert [child["spec"]["version"] for child in wire["children"]] == [2, 2]
        assert read_job(wire) == chunk
        assert read_job(VERSION_1) == RunSpec.from_wire(VERSION_1)


def simulate_both(fmu_dir: Path, spec: RunSpec, **reference: Any) -> tuple[np.ndarray, np.ndarray]:
    """The runner's result for ``spec`` and FMPy's for ``reference`` (its keyword arguments)."""
    return simulate(fmu_dir, spec), fmpy.simulate_fmu(str(fmu_dir), **reference)


class TestEveryFieldReachesFmpy:
    def test_time_range_and_output_interval(self, fmu_dirs: dict[str, Path]) -> None:
        args = {"start_time": 1.0, "stop_time": 4.0, "output_interval": 0.25}
        result, expected = simulate_both(fmu_dirs["VanDerPol"], RunSpec(**args), **args)
        assert_same(result, expected)
        assert (result["time"][0], result["time"][-1], len(result)) == (1.0, 4.0, 13)

    def test_fmi_type(self, fmu_dirs: dict[str, Path]) -> None:
        me, cs = (simulate(fmu_dirs["VanDerPol"], RunSpec(fmi_type=t, stop_time=5.0))
                  for t in ("ModelExchange", "CoSimulation"))
        assert not np.array_equal(me["x0"], cs["x0"])
        assert_same(me, fmpy.simulate_fmu(str(fmu_dirs["VanDerPol"]), fmi_type="ModelExchange", stop_time=5.0))

    def test_solver(self, fmu_dirs: dict[str, Path]) -> None:
        args = {"fmi_type": "ModelExchange", "stop_time": 5.0}
        euler, expected = simulate_both(fmu_dirs["VanDerPol"], RunSpec(solver="Euler", **args), solver="Euler", **args)
        assert_same(euler, expected)
        assert not np.array_equal(euler["x0"], simulate(fmu_dirs["VanDerPol"], RunSpec(**args))["x0"])

    def test_euler_step_size(self, fmu_dirs: dict[str, Path]) -> None:
        args = {"fmi_type": "ModelExchange", "solver": "Euler", "stop_time": 2.0}
        coarse, fine = (simulate_both(fmu_dirs["VanDerPol"], RunSpec(step_size=h, **args), step_size=h, **args)
                        for h in (0.01, 0.001))
        for result, expected in (coarse, fine):
            assert_same(result, expected)
        assert coarse[0]["x0"][-1] != fine[0]["x0"][-1]

    def test_relative_tolerance(self, fmu_dirs: dict[str, Path]) -> None:
        args = {"fmi_type": "ModelExchange", "stop_time": 10.0, "output_interval": 0.1}
        loose, tight = (simulate_both(fmu_dirs["VanDerPol"], RunSpec(relative_tolerance=rtol, **args),
                                      relative_tolerance=rtol, **args) for rtol in (1e-2, 1e-8))
        for result, expected in (loose, tight):
            assert_same(result, expected)
        assert abs(loose[0]["x1"][-1] - tight[0]["x1"][-1]) > 1e-3

    def test_start_values(self, fmu_dirs: dict[str, Path]) -> None:
        args = {"stop_time": 3.0, "start_values": {"mu": 3.0, "x0": 1.0}}
        result, expected = simulate_both(fmu_dirs["VanDerPol"], RunSpec(**args), **args)
        assert_same(result, expected)
        assert result["x0"][0] == 1.0

    def test_input_with_its_types(self, fmu_dirs: dict[str, Path]) -> None:
        columns = {"time": [0.0, 1.0, 1.0, 2.0], "real_in": [0.0, 1.0, 3.0, 4.0], "int_in": [1, 1, 7, 7]}
        spec = RunSpec(stop_time=2.0, output_interval=0.1, input=columns,
                       input_types={"real_in": "Real", "int_in": "Integer"})
        signals = np.array(list(zip(*columns.values(), strict=True)),
                           dtype=[("time", "f8"), ("real_in", "f8"), ("int_in", "i4")])
        result, expected = simulate_both(fmu_dirs["Feedthrough"], spec, stop_time=2.0, output_interval=0.1,
                                         input=signals)
        assert_same(result, expected)
        assert result["int_out"][-1] == 7

    def test_output(self, fmu_dirs: dict[str, Path]) -> None:
        result, expected = simulate_both(fmu_dirs["VanDerPol"], RunSpec(stop_time=1.0, output=["x1", "mu"]),
                                         stop_time=1.0, output=["x1", "mu"])
        assert_same(result, expected)
        assert result.dtype.names == ("time", "x1", "mu")

    def test_validate(self, fmus: dict[str, Path], tmp_path: Path) -> None:
        fmu_dir = undefined_unit_dir(fmus, tmp_path)
        with pytest.raises(JobFailed, match="furlong"):
            simulate(fmu_dir, RunSpec(stop_time=1.0))
        result, expected = simulate_both(fmu_dir, RunSpec(stop_time=1.0, validate=False),
                                         stop_time=1.0, validate=False)
        assert_same(result, expected)

    def test_debug_logging(self, fmu_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
        simulate(fmu_dirs["VanDerPol"], RunSpec(stop_time=0.1))
        assert "Instantiated" not in capsys.readouterr().err
        simulate(fmu_dirs["VanDerPol"], RunSpec(stop_time=0.1, debug_logging=True))
        assert "[OK] logAll: Instantiated VanDerPol." in capsys.readouterr().err


class TestThroughASandbox:
    def test_a_spec_of_the_release_before_runs_as_todays(self, backend: SandboxBackend,
                                                          fmu_dirs: dict[str, Path]) -> None:
        old = run_once(backend, fmu_dirs["VanDerPol"], VERSION_1)
        today = run_once(backend, fmu_dirs["VanDerPol"], RunSpec.from_wire(VERSION_1))
        for finished in (old, today):
            assert finished.outcome.status == "succeeded", finished.outcome
            assert finished.table is not None and finished.table.column_names == ["time", "x1"]
        assert old.table == today.table

    def test_debug_logging_reaches_the_runs_log(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        quiet, chatty = (run_once(backend, fmu_dirs["VanDerPol"], RunSpec(stop_time=0.1, debug_logging=on))
                         for on in (False, True))
        assert "Instantiated VanDerPol" not in quiet.outcome.log
        assert "[OK] logAll: Instantiated VanDerPol." in chatty.outcome.log

    def test_validate_false_runs_what_validation_refuses(self, backend: SandboxBackend, fmus: dict[str, Path],
                                                         tmp_path: Path) -> None:
        fmu_dir = undefined_unit_dir(fmus, tmp_path)
        refused: Finished = run_once(backend, fmu_dir, RunSpec(stop_time=1.0))
        assert (refused.outcome.status, refused.outcome.error_code) == ("failed", "model_error")
        assert "furlong" in (refused.outcome.error_message or "")
        passed = run_once(backend, fmu_dir, RunSpec(stop_time=1.0, validate=False))
        assert passed.outcome.status == "succeeded", passed.outcome
