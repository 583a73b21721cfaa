"""The body of ``POST /v1/fmus/{id}/runs`` from ``fmpy.simulate_fmu``-style arguments.

``input`` may be a dict of columns, an FMPy-style structured array or a pandas DataFrame; NumPy
scalars and arrays become plain JSON values. Nothing here imports NumPy or pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

JsonValue = bool | int | float | str


def run_body(*, start_values: Mapping[str, Any] | None, start_time: float | None, stop_time: float | None,
             output_interval: float | None, outputs: Sequence[str] | None, input: Any,
             fmi_type: str | None, solver: str | None, relative_tolerance: float | None,
             timeout: float | None) -> dict[str, Any]:
    """Only the given settings: the server fills the rest from the FMU's DefaultExperiment."""
    body: dict[str, Any] = {
        "start_time": start_time,
        "stop_time": stop_time,
        "output_interval": output_interval,
        "fmi_type": fmi_type,
        "solver": solver,
        "relative_tolerance": relative_tolerance,
        "timeout_s": timeout,
    }
    body = {key: _scalar(value) for key, value in body.items() if value is not None}
    if start_values:
        body["start_values"] = {str(name): _scalar(value) for name, value in start_values.items()}
    if outputs is not None:
        if isinstance(outputs, str):
            raise TypeError("outputs must be a list of variable names, not a string")
        body["outputs"] = [str(name) for name in outputs]
    if input is not None:
        body["input"] = input_columns(input)
    return body


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
