"""The API's resources, reached as client attributes: ``client.fmus``, ``client.runs``, ``client.billing``."""

from fmu_gateway_sdk.resources.billing import AsyncBilling, Billing
from fmu_gateway_sdk.resources.fmus import AsyncFmus, FmuRef, Fmus
from fmu_gateway_sdk.resources.runs import AsyncRuns, RunRef, Runs

__all__ = ["AsyncBilling", "AsyncFmus", "AsyncRuns", "Billing", "FmuRef", "Fmus", "RunRef", "Runs"]
