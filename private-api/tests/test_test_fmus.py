"""Check with plain FMPy that the C test FMUs from tests/fmus build and behave as documented.

The ``fmus`` fixture (tests/conftest.py) builds them once per session into a pytest tmp dir.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import fmpy
import numpy as np
import pytest
from fmpy import read_model_description, simulate_fmu
from fmpy.fmi1 import FMICallException
from fmpy.fmi2 import FMU2Slave
from fmpy.validation import validate_fmu
from fmus.build import NAMES, build_all, build_fmu, read_spec

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None, reason="needs gcc")

# (name, value reference, causality, type) of every variable: the contract other tests rely on
VARIABLES: dict[str, list[tuple[str, int, str, str]]] = {
    "VanDerPol": [
        ("x0", 0, "output", "Real"),
        ("der(x0)", 1, "local", "Real"),
        ("x1", 2, "output", "Real"),
        ("der(x1)", 3, "local", "Real"),
        ("mu", 4, "parameter", "Real"),
    ],
    "Feedthrough": [
        ("real_in", 0, "input", "Real"),
        ("real_out", 1, "output", "Real"),
        ("gain", 2, "parameter", "Real"),
        ("int_in", 3, "input", "Integer"),
        ("int_out", 4, "output", "Integer"),
        ("bool_in", 5, "input", "Boolean"),
        ("bool_out", 6, "output", "Boolean"),
        ("label", 7, "parameter", "String"),
    ],
    "Hostile": [
        ("y", 0, "output", "Real"),
        ("probe", 1, "output", "Real"),
        ("mode", 2, "parameter", "Integer"),
        ("port", 3, "parameter", "Integer"),
        ("target_env", 4, "parameter", "String"),
        ("target_file", 5, "parameter", "String"),
    ],
    "BouncingBall3": [
        ("time", 0, "independent", "Float64"),
        ("h", 1, "output", "Float64"),
        ("der(h)", 2, "local", "Float64"),
        ("v", 3, "output", "Float64"),
        ("der(v)", 4, "local", "Float64"),
        ("g", 5, "parameter", "Float64"),
        ("e", 6, "parameter", "Float64"),
    ],
}

# (FMI version, has ModelExchange, has CoSimulation)
INTERFACES: dict[str, tuple[str, bool, bool]] = {
    "VanDerPol": ("2.0", True, True),
    "Feedthrough": ("2.0", True, True),
    "Hostile": ("2.0", False, True),
    "BouncingBall3": ("3.0", True, True),
}

GRAVITY = 9.81


def value_at(result: np.ndarray, name: str, time: float) -> float:
    """Linearly interpolated value of ``name`` at ``time`` (exact on output grid points)."""
    return float(np.interp(time, result["time"], result[name]))


def van_der_pol_reference(mu: float, t_end: float, dt: float = 1e-3) -> tuple[float, float]:
    """Independent RK4 solution of the Van der Pol equations from x0=2, x1=0."""

    def f(x: np.ndarray) -> np.ndarray:
        return np.array([x[1], mu * (1 - x[0] ** 2) * x[1] - x[0]])

    x = np.array([2.0, 0.0])
    for _ in range(round(t_end / dt)):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return float(x[0]), float(x[1])


def sign_changes(values: np.ndarray) -> int:
    signs = np.sign(values[values != 0])
    return int(np.count_nonzero(np.diff(signs)))


# ---- builder ----


def test_build_all_returns_every_fmu(tmp_path: Path) -> None:
    built = build_all(tmp_path)
    assert list(built) == list(NAMES)
    for name, path in built.items():
        assert path == tmp_path / f"{name}.fmu"
        assert path.is_file()


@pytest.mark.parametrize("name", NAMES)
def test_archive_layout(fmus: dict[str, Path], name: str) -> None:
    spec = read_spec(name)
    platform = "x86_64-linux" if spec.fmi_version.startswith("3.") else "linux64"
    with zipfile.ZipFile(fmus[name]) as archive:
        names = set(archive.namelist())
    assert "modelDescription.xml" in names
    assert f"binaries/{platform}/{name}.so" in names
    assert "sources/model.c" in names
    if spec.fmi_version == "2.0":
        assert {"sources/fmi2_framework.c", "sources/fmi2_framework.h"} <= names


def test_build_is_cached_and_reproducible(fmus: dict[str, Path], tmp_path: Path) -> None:
    fresh = build_fmu("VanDerPol", tmp_path)
    assert fresh.read_bytes() == fmus["VanDerPol"].read_bytes()

    mtime = fresh.stat().st_mtime_ns
    assert build_fmu("VanDerPol", tmp_path) == fresh
    assert fresh.stat().st_mtime_ns == mtime

    # an FMU older than its sources must be rebuilt
    os.utime(fresh, (0, 0))
    build_fmu("VanDerPol", tmp_path)
    assert fresh.stat().st_mtime_ns > 0


def test_unknown_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown test FMU"):
        build_fmu("NoSuchModel", tmp_path)


# ---- model descriptions ----


@pytest.mark.parametrize("name", NAMES)
def test_fmpy_validation_accepts(fmus: dict[str, Path], name: str) -> None:
    assert validate_fmu(str(fmus[name])) == []
    read_model_description(fmus[name], validate=True)


@pytest.mark.parametrize("name", NAMES)
def test_variables_and_interfaces(fmus: dict[str, Path], name: str) -> None:
    md = read_model_description(fmus[name])
    actual = [(v.name, v.valueReference, v.causality, v.type) for v in md.modelVariables]
    assert actual == VARIABLES[name]

    fmi_version, has_me, has_cs = INTERFACES[name]
    assert md.fmiVersion == fmi_version
    assert (md.modelExchange is not None) == has_me
    assert (md.coSimulation is not None) == has_cs


# ---- VanDerPol ----


def test_van_der_pol_me_and_cs_agree_and_oscillate(fmus: dict[str, Path]) -> None:
    me = simulate_fmu(fmus["VanDerPol"], fmi_type="ModelExchange", solver="CVode")
    cs = simulate_fmu(fmus["VanDerPol"], fmi_type="CoSimulation")
    ref_x0, ref_x1 = van_der_pol_reference(mu=1.0, t_end=1.0)

    for result in (me, cs):
        assert result["time"][-1] == pytest.approx(20.0)
        assert value_at(result, "x0", 1.0) == pytest.approx(ref_x0, abs=1e-3)
        assert value_at(result, "x1", 1.0) == pytest.approx(ref_x1, abs=1e-3)
        # mu=1 has a period of about 6.7 s: 20 s give at least 5 zero crossings on a ~2.0 limit cycle
        assert sign_changes(result["x0"]) >= 5
        assert np.max(np.abs(result["x0"][result["time"] > 5])) == pytest.approx(2.0, abs=0.1)

    assert value_at(me, "x0", 1.0) == pytest.approx(value_at(cs, "x0", 1.0), abs=1e-3)
    # the fixed-step RK4 inside fmi2DoStep is much tighter than CVode's default tolerance
    assert value_at(cs, "x0", 1.0) == pytest.approx(ref_x0, abs=1e-6)


def test_van_der_pol_mu_changes_the_trajectory(fmus: dict[str, Path]) -> None:
    results = {
        mu: simulate_fmu(fmus["VanDerPol"], fmi_type="CoSimulation", stop_time=5, start_values={"mu": mu})
        for mu in (0.5, 3.0)
    }
    for mu, result in results.items():
        ref_x0, _ = van_der_pol_reference(mu=mu, t_end=5.0)
        assert value_at(result, "x0", 5.0) == pytest.approx(ref_x0, abs=1e-5)
    assert abs(value_at(results[0.5], "x0", 5.0) - value_at(results[3.0], "x0", 5.0)) > 0.1

    me = simulate_fmu(fmus["VanDerPol"], fmi_type="ModelExchange", stop_time=5, start_values={"mu": 3.0})
    assert value_at(me, "x0", 5.0) == pytest.approx(value_at(results[3.0], "x0", 5.0), abs=1e-3)


# ---- Feedthrough ----

FEEDTHROUGH_INPUT = np.array(
    [(0.0, 0.0, 0, False), (1.0, 1.0, 0, False), (1.0, 1.0, 7, True), (2.0, 2.0, 7, True)],
    dtype=[("time", np.float64), ("real_in", np.float64), ("int_in", np.int32), ("bool_in", np.bool_)],
)


def test_feedthrough_cs_passes_inputs_through(fmus: dict[str, Path]) -> None:
    result = simulate_fmu(
        fmus["Feedthrough"],
        fmi_type="CoSimulation",
        input=FEEDTHROUGH_INPUT,
        start_values={"gain": 2.0, "label": "hello"},
    )
    time = result["time"]
    assert time[-1] == pytest.approx(2.0)
    # FMPy sets inputs at the start of each step and samples outputs at its end: one step of lag
    np.testing.assert_allclose(result["real_out"][1:], 2.0 * time[:-1], atol=1e-12)
    after = time > 1.0 + 1e-9
    assert np.all(result["int_out"][after] == 7)
    assert np.all(result["int_out"][~after] == 0)
    assert np.all(result["bool_out"][after])
    assert not np.any(result["bool_out"][~after])


def test_feedthrough_me_passes_inputs_through(fmus: dict[str, Path]) -> None:
    result = simulate_fmu(
        fmus["Feedthrough"], fmi_type="ModelExchange", input=FEEDTHROUGH_INPUT, start_values={"gain": 2.0}
    )
    time = result["time"]
    np.testing.assert_allclose(result["real_out"], 2.0 * time, atol=1e-9)
    assert np.all(result["int_out"][time < 1.0 - 1e-9] == 0)
    assert np.all(result["int_out"][time > 1.0 + 1e-9] == 7)
    assert np.all(result["bool_out"][time > 1.0 + 1e-9])


def test_feedthrough_low_level_access(fmus: dict[str, Path], tmp_path: Path) -> None:
    md = read_model_description(fmus["Feedthrough"])
    vr = {v.name: v.valueReference for v in md.modelVariables}
    assert md.coSimulation is not None
    fmu = FMU2Slave(
        guid=md.guid,
        unzipDirectory=fmpy.extract(fmus["Feedthrough"], unzipdir=tmp_path),
        modelIdentifier=md.coSimulation.modelIdentifier,
        instanceName="feedthrough",
    )
    fmu.instantiate()
    try:
        assert fmu.getString([vr["label"]]) == [b"x"]
        fmu.setString([vr["label"]], ["hello"])
        assert fmu.getString([vr["label"]]) == [b"hello"]
        fmu.setupExperiment(startTime=0.0)
        fmu.enterInitializationMode()
        fmu.exitInitializationMode()
        fmu.setReal([vr["real_in"]], [1.5])
        fmu.setInteger([vr["int_in"]], [-3])
        fmu.setBoolean([vr["bool_in"]], [True])
        fmu.doStep(currentCommunicationPoint=0.0, communicationStepSize=0.1)
        assert fmu.getReal([vr["real_out"]]) == [1.5]
        assert fmu.getInteger([vr["int_out"]]) == [-3]
        assert fmu.getBoolean([vr["bool_out"]]) == [True]
        # a Real value reference used as Integer must be refused, not silently read
        with pytest.raises(FMICallException):
            fmu.getInteger([vr["real_out"]])
        fmu.terminate()
    finally:
        fmu.freeInstance()


# ---- Hostile (only the harmless modes run in this process) ----


def test_hostile_mode_0_is_a_clock(fmus: dict[str, Path]) -> None:
    result = simulate_fmu(fmus["Hostile"], start_values={"mode": 0})
    assert result["time"][-1] == pytest.approx(1.0)
    np.testing.assert_allclose(result["y"], result["time"], atol=1e-12)
    assert np.all(result["probe"] == 0)


def test_hostile_mode_6_makes_fmpy_raise(fmus: dict[str, Path]) -> None:
    messages: list[tuple[int, bytes]] = []

    def logger(component: object, instance_name: bytes, status: int, category: bytes, message: bytes) -> None:
        messages.append((status, message))

    with pytest.raises(FMICallException, match="fmi2DoStep"):
        simulate_fmu(fmus["Hostile"], start_values={"mode": 6}, logger=logger)
    assert (3, b"Hostile: requested failure") in messages  # 3 = fmi2Error


# Runs one Hostile mode in a child interpreter and prints each reached communication point.
HOSTILE_RUNNER = textwrap.dedent(
    """
    import resource
    import sys

    from fmpy import simulate_fmu

    fmu, mode, address_space = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the crashes are intended: no core files
    if address_space:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    def report(time, recorder):
        print(f"t={time:.1f}", flush=True)
        return True

    simulate_fmu(fmu, start_values={"mode": mode}, step_finished=report)
    print("finished", flush=True)
    """
)


def run_hostile(fmu: Path, mode: int, cwd: Path, address_space: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HOSTILE_RUNNER, str(fmu), str(mode), str(address_space)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("mode", "signals", "address_space"),
    [
        pytest.param(1, {signal.SIGSEGV}, 0, id="segfault"),
        pytest.param(2, {signal.SIGABRT}, 0, id="abort"),
        # malloc fails under the 1 GiB limit and the unchecked memset hits NULL; SIGKILL if the OOM killer wins
        pytest.param(5, {signal.SIGSEGV, signal.SIGKILL}, 1 << 30, id="memory-hog"),
    ],
)
def test_hostile_crash_modes_kill_the_process(
    fmus: dict[str, Path], tmp_path: Path, mode: int, signals: set[signal.Signals], address_space: int
) -> None:
    proc = run_hostile(fmus["Hostile"], mode, tmp_path, address_space)
    assert proc.returncode < 0, proc.stdout + proc.stderr
    assert signal.Signals(-proc.returncode) in signals
    # the first rows were produced, then the process died in the step starting at t=0.5
    assert "t=0.5" in proc.stdout
    assert "t=0.6" not in proc.stdout
    assert "finished" not in proc.stdout


def test_hostile_mode_6_fails_cleanly_in_a_subprocess(fmus: dict[str, Path], tmp_path: Path) -> None:
    proc = run_hostile(fmus["Hostile"], 6, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "t=0.5" in proc.stdout
    assert "t=0.6" not in proc.stdout
    assert "Hostile: requested failure" in proc.stdout
    assert "fmi2DoStep failed" in proc.stderr


# ---- BouncingBall3 (FMI 3.0) ----


@pytest.mark.parametrize("fmi_type", ["ModelExchange", "CoSimulation"])
def test_bouncing_ball_bounces_and_comes_to_rest(fmus: dict[str, Path], fmi_type: str) -> None:
    result = simulate_fmu(fmus["BouncingBall3"], fmi_type=fmi_type)
    time, h, v = result["time"], result["h"], result["v"]

    assert time[-1] == pytest.approx(3.0)
    assert h[0] == pytest.approx(1.0)
    assert np.all(h >= -1e-6)

    rebounds = np.flatnonzero((v[:-1] < 0) & (v[1:] > 0))
    assert len(rebounds) >= 3
    # free fall from 1 m hits the floor after sqrt(2 h / g)
    assert time[rebounds[0] + 1] == pytest.approx(np.sqrt(2 / GRAVITY), abs=0.02)
    # restitution 0.7 loses energy: the next apex is about e^2 = 0.49 m
    assert np.max(h[rebounds[0] + 1 :]) == pytest.approx(0.49, abs=0.03)
    # bounces slower than 0.1 m/s stop the ball well before t=3
    assert h[-1] == pytest.approx(0.0, abs=1e-6)
    assert v[-1] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("fmi_type", ["ModelExchange", "CoSimulation"])
def test_bouncing_ball_restitution_parameter(fmus: dict[str, Path], fmi_type: str) -> None:
    result = simulate_fmu(fmus["BouncingBall3"], fmi_type=fmi_type, stop_time=1.2, start_values={"e": 0.9})
    after_first_bounce = result["time"] > np.sqrt(2 / GRAVITY) + 0.05
    assert np.max(result["h"][after_first_bounce]) == pytest.approx(0.81, abs=0.03)
