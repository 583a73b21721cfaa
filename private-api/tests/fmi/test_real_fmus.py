"""Our reading of the project's C test FMUs agrees with FMPy's, and FMPy runs what we extract.

The ``fmus`` fixture (tests/conftest.py) builds them once per session.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import fmpy
import pytest
from fmpy.model_description import ModelVariable
from fmus.build import NAMES

from app.fmi.archive import ArchiveLimits, extract_fmu, inspect_fmu
from app.fmi.model_description import Variable

# Hostile misbehaves on purpose once simulated; the sandbox tests run it, not these.
RUNNABLE = ("VanDerPol", "Feedthrough", "BouncingBall3")

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None, reason="needs gcc")


def fmpy_start(variable: ModelVariable) -> Any:
    """FMPy keeps starts as the XML text; convert it the way FMI defines the type."""
    text = variable.start
    if text is None:
        return None
    if variable.type in ("Real", "Float32", "Float64"):
        return float(text)
    if variable.type == "Boolean":
        return text in ("true", "1")
    if variable.type in ("String", "Binary"):
        return text
    return int(text)


def fmpy_view(variable: ModelVariable) -> tuple[Any, ...]:
    start = fmpy_start(variable)
    return (variable.name, variable.valueReference, variable.causality, variable.variability, variable.initial, start)


def our_view(variable: Variable) -> tuple[Any, ...]:
    return (
        variable.name,
        variable.value_reference,
        variable.causality,
        variable.variability,
        variable.initial,
        variable.start,
    )


@pytest.mark.parametrize("name", NAMES)
def test_variables_match_fmpys_reading(fmus: dict[str, Path], name: str) -> None:
    info = inspect_fmu(fmus[name], ArchiveLimits()).info
    expected = fmpy.read_model_description(str(fmus[name]))

    assert [our_view(v) for v in info.variables] == [fmpy_view(v) for v in expected.modelVariables]
    assert [v.unit for v in info.variables] == [v.unit for v in expected.modelVariables]
    assert info.fmi_version == expected.fmiVersion
    assert info.guid == expected.guid


@pytest.mark.parametrize("name", RUNNABLE)
def test_fmpy_simulates_the_extracted_fmu(fmus: dict[str, Path], name: str, tmp_path: Path) -> None:
    dest = tmp_path / "extracted"
    extract_fmu(fmus[name], dest, ArchiveLimits())

    result = fmpy.simulate_fmu(str(dest), stop_time=0.1, output_interval=0.05)

    assert len(result) >= 2
