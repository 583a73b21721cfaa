"""``SweepResult``: a finished sweep, its long result table and its summary (both Arrow IPC).

``to_pandas()``/``summary()`` need pandas and pyarrow (``fmu-gateway-sdk[pandas]``), ``to_arrow()``
pyarrow (``[arrow]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmu_gateway_sdk._optional import import_optional
from fmu_gateway_sdk.models import Sweep, SweepCounts, SweepRun

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["SweepResult"]


def arrow_to_arrow(arrow_ipc: bytes, feature: str) -> pa.Table:
    pa = import_optional("pyarrow", feature)
    return pa.ipc.open_file(pa.BufferReader(arrow_ipc)).read_all()


def arrow_to_pandas(arrow_ipc: bytes) -> Any:
    import_optional("pandas", "a sweep's DataFrame")
    return arrow_to_arrow(arrow_ipc, "a sweep's DataFrame").to_pandas()


class SweepResult:
    """A finished sweep: ``.sweep`` (``.id``, ``.counts``, ...), ``.runs`` (the children with their
    parameters), the long table (``to_pandas()``: ``sweep_index``, the parameters, then the time
    series of every succeeded child) and ``summary()`` (one row per child, failed ones included)."""

    def __init__(self, sweep: Sweep, result_ipc: bytes, summary_ipc: bytes, runs: list[SweepRun]) -> None:
        self.sweep = sweep
        self.runs = runs
        self._result_ipc = result_ipc
        self._summary_ipc = summary_ipc

    @property
    def id(self) -> str:
        return self.sweep.id

    @property
    def counts(self) -> SweepCounts:
        return self.sweep.counts

    @property
    def failed_runs(self) -> list[SweepRun]:
        """Children that did not succeed (their rows are absent from the long table)."""
        return [run for run in self.runs if run.status != "succeeded"]

    def __len__(self) -> int:
        return len(self.runs)

    def __repr__(self) -> str:
        return f"SweepResult(sweep={self.id!r}, status={self.sweep.status!r}, runs={len(self.runs)})"

    def to_arrow(self) -> pa.Table:
        """The long table as a ``pyarrow.Table``."""
        return arrow_to_arrow(self._result_ipc, "SweepResult.to_arrow()")

    def to_pandas(self) -> pd.DataFrame:
        """The long table as a DataFrame: ``sweep_index``, the parameters, then the time series."""
        return arrow_to_pandas(self._result_ipc)

    def summary(self) -> pd.DataFrame:
        """One row per child: sweep_index, run_id, status, error_code, the parameters, then
        ``final(<output>)``, ``min(<output>)`` and ``max(<output>)``."""
        return arrow_to_pandas(self._summary_ipc)
