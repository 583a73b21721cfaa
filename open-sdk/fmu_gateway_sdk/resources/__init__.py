"""The API's resources, reached as client attributes: ``client.fmus``, ``client.runs``, ``client.sweeps``,
``client.billing``."""

from fmu_gateway_sdk.resources.billing import AsyncBilling, Billing
from fmu_gateway_sdk.resources.fmus import AsyncFmus, FmuRef, Fmus
from fmu_gateway_sdk.resources.runs import AsyncRuns, RunRef, Runs
from fmu_gateway_sdk.resources.sweeps import AsyncSweeps, SweepRef, Sweeps

__all__ = ["AsyncBilling", "AsyncFmus", "AsyncRuns", "AsyncSweeps", "Billing", "FmuRef", "Fmus", "RunRef", "Runs",
           "SweepRef", "Sweeps"]
