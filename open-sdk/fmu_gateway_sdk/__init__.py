"""Python client for FMU Gateway: upload FMUs (FMI 2.0/3.0 models) once, simulate them as a service.

    from fmu_gateway_sdk import FMUGatewayClient

    with FMUGatewayClient() as client:          # $FMU_GATEWAY_API_KEY, $FMU_GATEWAY_URL
        result = client.simulate("VanDerPol.fmu", start_values={"mu": 2.5}, stop_time=10, output=["x0"])
        print(result.to_pandas().head())
"""

from fmu_gateway_sdk._client import AsyncFMUGatewayClient, FMUGatewayClient, FmuInput
from fmu_gateway_sdk._run_request import RunOptions
from fmu_gateway_sdk._version import __version__
from fmu_gateway_sdk.auth import ApiKeyAuth, TokenAuth
from fmu_gateway_sdk.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    FMUGatewayError,
    InsufficientCreditsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunFailedError,
    ValidationError,
    WaitTimeoutError,
)
from fmu_gateway_sdk.models import (
    Balance,
    DailyEarnings,
    DefaultExperiment,
    Fmu,
    FmuSummary,
    FmuUsage,
    Grant,
    GranteeUsage,
    Quote,
    Run,
    RunError,
    RunResultInfo,
    RunTimings,
    Sweep,
    SweepCounts,
    SweepRun,
    Variable,
)
from fmu_gateway_sdk.result import SimulationResult
from fmu_gateway_sdk.sweep_result import SweepResult

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ApiKeyAuth",
    "AsyncFMUGatewayClient",
    "AuthenticationError",
    "Balance",
    "ConflictError",
    "DailyEarnings",
    "DefaultExperiment",
    "FMUGatewayClient",
    "FMUGatewayError",
    "Fmu",
    "FmuInput",
    "FmuSummary",
    "FmuUsage",
    "Grant",
    "GranteeUsage",
    "InsufficientCreditsError",
    "NotFoundError",
    "PermissionDeniedError",
    "Quote",
    "RateLimitError",
    "Run",
    "RunError",
    "RunFailedError",
    "RunOptions",
    "RunResultInfo",
    "RunTimings",
    "SimulationResult",
    "Sweep",
    "SweepCounts",
    "SweepResult",
    "SweepRun",
    "TokenAuth",
    "ValidationError",
    "Variable",
    "WaitTimeoutError",
    "__version__",
]
