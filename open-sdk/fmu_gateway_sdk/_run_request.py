"""The keywords of one simulation, :class:`RunOptions`, defined once for ``simulate``, ``sweep``,
``runs.create`` and ``sweeps.create`` of both clients, and the request body built from them.

``input`` may be a dict of columns, an FMPy-style structured array or a pandas DataFrame; NumPy
scalars and arrays become plain JSON values. Nothing here imports NumPy or pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from typing_extensions import TypedDict

from fmu_gateway_sdk._deprecation import warn_deprecated
from fmu_gateway_sdk.models import FmiType, Solver

__all__ = ["RunOptions", "input_columns", "run_body", "run_options", "start_values_json"]

JsonValue = bool | int | float | str


class RunOptions(TypedDict, total=False):
    """The settings of one simulation, named and meant as ``fmpy.simulate_fmu``'s. Each is optional;
    one left out (or ``None``) is the server's default: the FMU's DefaultExperiment, else FMPy's.

    ``simulate``, ``sweep`` (the base run of every child), ``runs.create`` and ``sweeps.create``
    take them as keywords, in the sync and the async client alike::

        options: RunOptions = {"stop_time": 10, "output": ["x0"], "run_timeout": 60}
        client.simulate("VanDerPol.fmu", start_values={"mu": 2.5}, **options)
    """

    start_values: Mapping[str, Any] | None
    """Start values by variable name, e.g. ``{"mu": 2.5}`` (NumPy scalars are fine)."""

    start_time: float | None
    """Start of the simulation; default: DefaultExperiment ``startTime``, else 0."""

    stop_time: float | None
    """End of the simulation; default: DefaultExperiment ``stopTime``, else ``start_time + 1``."""

    output_interval: float | None
    """Time between two rows of the result (> 0)."""

    step_size: float | None
    """Fixed step size (> 0) of the Euler solver (ModelExchange); without ``output_interval`` it also
    sets the time between rows, as in ``fmpy.simulate_fmu``."""

    relative_tolerance: float | None
    """Relative tolerance of the CVode solver (between 0 and 1)."""

    solver: Solver | None
    """Integrator for ModelExchange: ``"CVode"`` or ``"Euler"``."""

    fmi_type: FmiType | None
    """``"CoSimulation"`` (the default where the FMU supports it) or ``"ModelExchange"``."""

    input: Any
    """Input signals: a ``time`` column plus one column per input variable, as a dict of columns,
    an FMPy-style structured array or a pandas DataFrame (a ``time`` index works too)."""

    output: Sequence[str] | None
    """Variables to record (``time`` always comes first); default: the model's outputs."""

    validate: bool | None
    """Validate the modelDescription.xml before simulating (FMPy's default: true)."""

    debug_logging: bool | None
    """The FMU's debug logging, into the run's log (``client.runs.log(run)``)."""

    run_timeout: float | None
    """The run's wall-clock limit in seconds, enforced by the server: a run still going then ends as
    ``timed_out``. Not how long the client waits: that is ``timeout=`` (see the README)."""

    cache: bool | None
    """Whether an earlier identical succeeded run of yours may answer at once, from the run cache
    (the server's default: yes; ``False`` always computes). Not an FMPy argument."""

    outputs: Sequence[str] | None
    """Deprecated: the former name of ``output`` (a ``DeprecationWarning``; removed in a later release)."""


RUN_OPTION_NAMES: frozenset[str] = frozenset(RunOptions.__optional_keys__ | RunOptions.__required_keys__)

# RunOptions key -> field of the run body, where they differ.
_BODY_FIELDS = {"run_timeout": "timeout_s"}
_SCALAR_OPTIONS = ("start_time", "stop_time", "output_interval", "step_size", "relative_tolerance", "solver",
                   "fmi_type", "validate", "debug_logging", "run_timeout", "cache")


def run_options(options: RunOptions, *, caller: str, timeout: float | None = None) -> RunOptions:
    """``options`` as the current spelling: unknown keywords are a ``TypeError`` (``**options`` would
    otherwise swallow a typo), the deprecated ``outputs=`` becomes ``output=``, and ``timeout=``
    given to a method where it used to be the run's wall-clock limit becomes ``run_timeout=``, each
    with a ``DeprecationWarning``. ``caller`` names the method in messages (``"simulate"``)."""
    unknown = sorted(set(options) - RUN_OPTION_NAMES)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    resolved = options.copy()
    outputs = resolved.pop("outputs", None)
    if outputs is not None:
        if resolved.get("output") is not None:
            raise TypeError(f"{caller}() got both output= and its deprecated alias outputs=; pass output= only")
        warn_deprecated(f"{caller}(outputs=) is deprecated: pass output= (fmpy.simulate_fmu's name).")
        resolved["output"] = outputs
    if timeout is not None:
        if resolved.get("run_timeout") is not None:
            raise TypeError(f"{caller}() got both run_timeout= and timeout=; pass run_timeout= only")
        warn_deprecated(
            f"{caller}(timeout=) is deprecated: it sets the run's wall-clock limit, which is now run_timeout=; "
            "timeout= is to mean how long the client waits, as everywhere else in the SDK. Pass run_timeout= "
            "to keep this behaviour.")
        resolved["run_timeout"] = timeout
    return resolved


def run_body(options: RunOptions) -> dict[str, Any]:
    """The run part of a ``POST /v1/fmus/{id}/runs`` (or ``/sweeps``) body: only the given settings,
    so the server fills the rest from the FMU. ``options`` must have been through :func:`run_options`."""
    given: dict[str, Any] = dict(options)
    body = {_BODY_FIELDS.get(key, key): _scalar(given[key]) for key in _SCALAR_OPTIONS
            if given.get(key) is not None}
    if given.get("start_values"):
        body["start_values"] = start_values_json(given["start_values"])
    output = given.get("output")
    if output is not None:
        if isinstance(output, str):
            raise TypeError("output must be a list of variable names, not a string")
        body["output"] = [str(name) for name in output]
    if given.get("input") is not None:
        body["input"] = input_columns(given["input"])
    return body


def start_values_json(start_values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(name): _scalar(value) for name, value in start_values.items()}


def input_columns(table: Any) -> dict[str, list[JsonValue]]:
    """An input table as ``{"time": [...], "<input>": [...]}``."""
    if isinstance(table, Mapping):
        columns = {str(name): _column(values) for name, values in table.items()}
    elif getattr(getattr(table, "dtype", None), "names", None):  # NumPy structured array
        columns = {name: _column(table[name]) for name in table.dtype.names}
    elif hasattr(table, "columns") and hasattr(table, "index") and hasattr(table, "reset_index"):  # DataFrame
        if "time" not in table.columns and getattr(table.index, "name", None) == "time":
            table = table.reset_index()
        columns = {str(name): _column(table[name].to_numpy()) for name in table.columns}
    else:
        raise TypeError("input must be a dict of columns, a NumPy structured array or a pandas DataFrame, "
                        f"not {type(table).__name__}")
    if "time" not in columns:
        raise ValueError("the input table needs a 'time' column")
    return columns


def _column(values: Any) -> list[JsonValue]:
    if hasattr(values, "tolist"):  # NumPy/pandas: tolist() yields Python bool/int/float
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"an input column must be a sequence of values, not {type(values).__name__}")
    return [_scalar(v) for v in values]


def _scalar(value: Any) -> Any:
    # NumPy scalars (np.float64(2.5), np.bool_(True), ...) are not JSON serialisable as such.
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, bool | int | float | str):
        return value.item()
    return value
