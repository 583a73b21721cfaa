"""``SimulationResult``: a finished run and its result table, which travels as Arrow IPC.

Conversions need the optional extras: ``to_arrow()``/``to_numpy()`` pyarrow and numpy
(``fmu-gateway-sdk[arrow]``), ``to_pandas()`` pandas (``[pandas]``), ``plot()`` matplotlib (``[plot]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fmu_gateway_sdk._optional import import_optional
from fmu_gateway_sdk.models import Run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from matplotlib.figure import Figure

__all__ = ["SimulationResult"]


class SimulationResult:
    """The result of a successful run: ``.run`` (id, status, timings, ...) and the table of values over
    ``time``, as an FMPy-style structured array (``to_numpy()``), a DataFrame or an Arrow table."""

    def __init__(self, run: Run | str, arrow_ipc: bytes, *, final_run: Callable[[], Run] | None = None) -> None:
        """``run``: the finished run; or, with ``final_run``, the submitted one (or only its id) and
        how to read it once finished, which happens on the first use of :attr:`run` (``simulate``
        gets the values in one round trip and the run's record only if it is asked for)."""
        if isinstance(run, str) and final_run is None:
            raise ValueError("a SimulationResult given only its run's id needs final_run to read the run")
        self._run: Run | str = run
        self._final_run = final_run
        self._arrow_ipc = arrow_ipc
        self._table: pa.Table | None = None

    @property
    def run(self) -> Run:
        """The finished run: id, status, timings, credits, spec."""
        if self._final_run is not None:
            self._run, self._final_run = self._final_run(), None
        assert isinstance(self._run, Run)
        return self._run

    @property
    def run_id(self) -> str:
        return self._run if isinstance(self._run, str) else self._run.id

    @property
    def columns(self) -> list[str]:
        """Column names: ``time`` first, then the recorded variables."""
        if isinstance(self._run, Run) and self._run.result is not None:
            return list(self._run.result.columns)
        return list(self.to_arrow().column_names)

    def __len__(self) -> int:
        if isinstance(self._run, Run) and self._run.result is not None:
            return self._run.result.rows
        return int(self.to_arrow().num_rows)

    def __repr__(self) -> str:
        return f"SimulationResult(run={self.run_id!r}, rows={len(self)}, columns={self.columns!r})"

    @property
    def arrow_ipc(self) -> bytes:
        """The result exactly as the server sent it (Arrow IPC file format)."""
        return self._arrow_ipc

    def to_arrow(self) -> pa.Table:
        """The result as a ``pyarrow.Table``."""
        if self._table is None:
            pa = import_optional("pyarrow", "SimulationResult.to_arrow()")
            self._table = pa.ipc.open_file(pa.BufferReader(self._arrow_ipc)).read_all()
        return self._table

    def to_numpy(self) -> np.ndarray[Any, Any]:
        """The result as a NumPy structured array, like ``fmpy.simulate_fmu`` returns: one field per
        column with the model's type (float64 for Real, int32 for Integer, bool for Boolean)."""
        numpy = import_optional("numpy", "SimulationResult.to_numpy()")
        table = self.to_arrow()
        arrays = [_column_to_numpy(table.column(i)) for i in range(table.num_columns)]
        dtype = numpy.dtype([(name, a.dtype, a.shape[1:]) for name, a in zip(table.column_names, arrays, strict=True)])
        out: np.ndarray[Any, Any] = numpy.empty(table.num_rows, dtype=dtype)
        for name, array in zip(table.column_names, arrays, strict=True):
            out[name] = array
        return out

    def to_pandas(self) -> pd.DataFrame:
        """The result as a ``pandas.DataFrame`` with the same columns as :meth:`to_numpy`."""
        import_optional("pandas", "SimulationResult.to_pandas()")
        df: pd.DataFrame = self.to_arrow().to_pandas()
        return df

    def plot(self, names: Sequence[str] | None = None, *,
             filename: str | os.PathLike[str] | None = None) -> Figure:
        """One subplot per variable over time, like ``fmpy.util.plot_result``.

        Returns the matplotlib ``Figure`` (a notebook shows it); ``filename`` also saves it. No pyplot
        state is touched, so this works headless.
        """
        import_optional("matplotlib", "SimulationResult.plot()")
        from matplotlib.figure import Figure

        table = self.to_arrow()
        names = [n for n in (names or table.column_names) if n != "time"]
        if not names:
            raise ValueError("Nothing to plot: the result has no column besides 'time'.")
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise KeyError(f"Not in the result: {', '.join(missing)}; columns are {table.column_names}")
        time = _column_to_numpy(table.column("time"))
        figure = Figure(figsize=(8, 1.2 + 1.8 * len(names)), layout="constrained")
        axes = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
        for ax, name in zip(axes, names, strict=True):
            values = _column_to_numpy(table.column(name))
            if values.dtype == bool or values.dtype.kind in "iu":
                ax.step(time, values, where="post")
            else:
                ax.plot(time, values)
            ax.set_ylabel(name)
            ax.grid(True, alpha=0.3)
        axes[-1].set_xlabel("time")
        start_values = self.run.spec.get("start_values") or {}
        settings = ", ".join(f"{name}={value}" for name, value in start_values.items())
        figure.suptitle(f"run {self.run.id}" + (f" ({settings})" if settings else ""))
        if filename is not None:
            figure.savefig(os.fspath(filename))
        return figure


def _column_to_numpy(column: Any) -> np.ndarray[Any, Any]:
    """One Arrow column as NumPy; FMI 3 array variables (fixed-size lists) become 2-D."""
    pa = import_optional("pyarrow", "SimulationResult")
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        flat: np.ndarray[Any, Any] = array.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(array), width)
    values: np.ndarray[Any, Any] = array.to_numpy(zero_copy_only=False)
    return values
