"""FMPy on FMU Gateway: a script written for FMPy runs its simulations on the gateway when
``import fmpy`` becomes ``from fmu_gateway_sdk import fmpy``.

    from fmu_gateway_sdk import fmpy

    result = fmpy.simulate_fmu("VanDerPol.fmu", start_values={"mu": 2.5}, stop_time=10)
    print(result["x0"][-1])

``simulate_fmu`` takes FMPy's arguments by FMPy's names and order and returns FMPy's structured
array. The FMU is uploaded on the first call only (the server is asked for its SHA-256 first). The
client is :func:`use_client`'s, else one made on first use from ``$FMU_GATEWAY_API_KEY`` and
``$FMU_GATEWAY_URL``. ``read_model_description`` reads the local file with FMPy itself, and every
other name (``plot_result``, ``dump``, ``fmpy.util``, ...) is the real FMPy's, which these need
installed: ``pip install 'fmu-gateway-sdk[fmpy]'``. See docs/fmpy.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

from fmu_gateway_sdk._client import FMUGatewayClient, FmuInput, local_fmu_path
from fmu_gateway_sdk._optional import import_optional
from fmu_gateway_sdk.models import FmiType, FmuSummary, Solver

if TYPE_CHECKING:
    import numpy as np

__all__ = ["read_model_description", "simulate_fmu", "use_client"]

# FMPy's arguments that act on a local FMU instance or process, with the value that leaves them unused.
_LOCAL_ONLY: dict[str, object] = {
    "record_events": True, "apply_default_start_values": False, "visible": False, "logger": None,
    "fmi_call_logger": None, "step_finished": None, "model_description": None, "fmu_instance": None,
    "set_input_derivatives": False, "remote_platform": "auto", "early_return_allowed": False,
    "use_event_mode": False, "initialize": True, "terminate": True, "fmu_state": None, "set_stop_time": True,
}

_lock = threading.Lock()
_client: FMUGatewayClient | None = None
_client_is_ours = False


def use_client(client: FMUGatewayClient | None) -> None:
    """Simulate with ``client`` from now on; ``None``: the default again (made from the environment
    on next use). A default client made here is closed; a client passed in is left to its owner."""
    global _client, _client_is_ours
    with _lock:
        if _client is not None and _client_is_ours:
            _client.close()
        _client, _client_is_ours = client, False


def _default_client() -> FMUGatewayClient:
    global _client, _client_is_ours
    with _lock:
        if _client is None:
            _client, _client_is_ours = FMUGatewayClient(), True
        return _client


def simulate_fmu(filename: FmuInput,
                 validate: bool = True,
                 start_time: float | str | None = None,
                 stop_time: float | str | None = None,
                 solver: Solver = "CVode",
                 step_size: float | str | None = None,
                 relative_tolerance: float | str | None = None,
                 output_interval: float | str | None = None,
                 record_events: bool = True,
                 fmi_type: FmiType | None = None,
                 start_values: Mapping[str, Any] | None = None,
                 apply_default_start_values: bool = False,
                 input: Any = None,
                 output: Sequence[str] | None = None,
                 timeout: float | str | None = None,
                 debug_logging: bool = False,
                 visible: bool = False,
                 logger: Callable[..., Any] | None = None,
                 fmi_call_logger: Callable[[str], None] | None = None,
                 step_finished: Callable[..., bool] | None = None,
                 model_description: Any = None,
                 fmu_instance: Any = None,
                 set_input_derivatives: bool = False,
                 remote_platform: str | None = "auto",
                 early_return_allowed: bool = False,
                 use_event_mode: bool = False,
                 initialize: bool = True,
                 terminate: bool = True,
                 fmu_state: Any = None,
                 set_stop_time: bool = True,
                 *,
                 client: FMUGatewayClient | None = None) -> np.ndarray[Any, Any]:
    """``fmpy.simulate_fmu`` on the gateway: the same arguments, the same structured array.

    ``filename`` is a ``.fmu`` file (uploaded unless the server has its bytes already), or the id of
    an uploaded FMU. ``timeout`` is the run's wall-clock limit on the server: a run still going then
    fails (``RunFailedError``) instead of returning what it has, as FMPy does. As in FMPy, ``solver``
    and ``step_size`` apply to ModelExchange only. Arguments that act on a local FMU instance or
    process (``fmu_instance``, ``logger``, ``step_finished``, ``record_events=False``, ...) raise
    ``TypeError`` unless left at FMPy's default. ``client`` overrides :func:`use_client`'s.
    """
    given = {"record_events": record_events, "apply_default_start_values": apply_default_start_values,
             "visible": visible, "logger": logger, "fmi_call_logger": fmi_call_logger,
             "step_finished": step_finished, "model_description": model_description, "fmu_instance": fmu_instance,
             "set_input_derivatives": set_input_derivatives, "remote_platform": remote_platform,
             "early_return_allowed": early_return_allowed, "use_event_mode": use_event_mode,
             "initialize": initialize, "terminate": terminate, "fmu_state": fmu_state, "set_stop_time": set_stop_time}
    _refuse_local_only(given)
    gateway = client if client is not None else _default_client()
    path = local_fmu_path(filename)
    if path is not None and path.is_dir():
        raise ValueError(f"{path} is a directory: the gateway takes an FMU as its .fmu file (zip the extracted FMU)")
    fmu = _uploaded(gateway, filename, path)
    # FMPy picks the interface the same way and reads solver and step_size for ModelExchange only.
    model_exchange = (fmi_type or ("CoSimulation" if fmu.supports_co_simulation else "ModelExchange")) \
        == "ModelExchange"
    result = gateway.simulate(  # by path when there is one: a remembered upload gone since is made again
        path if path is not None else fmu, validate=validate, start_time=_number(start_time),
        stop_time=_number(stop_time),
        solver=solver if model_exchange else None, step_size=_number(step_size) if model_exchange else None,
        relative_tolerance=_number(relative_tolerance), output_interval=_number(output_interval),
        fmi_type=fmi_type, start_values=start_values, input=input, output=output,
        run_timeout=_number(timeout), debug_logging=debug_logging)
    table = result.to_numpy()
    return _as_fmpy_result(table, path) if path is not None else table


def read_model_description(filename: str | PathLike[str], validate: bool = True,
                           validate_variable_names: bool = False, validate_model_structure: bool = False) -> Any:
    """FMPy's ``read_model_description`` of the local file (FMPy's own ``ModelDescription``; no request)."""
    real = import_optional("fmpy", "fmu_gateway_sdk.fmpy.read_model_description()")
    return real.read_model_description(filename, validate=validate, validate_variable_names=validate_variable_names,
                                       validate_model_structure=validate_model_structure)


def __getattr__(name: str) -> Any:
    """Any other name is the real FMPy's (``plot_result``, ``dump``, ``extract``, ``util``, ...)."""
    if name.startswith("__"):  # module machinery (__path__, __file__, ...) must not find FMPy's
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    real = import_optional("fmpy", f"fmu_gateway_sdk.fmpy.{name}")
    return getattr(real, name)


def _refuse_local_only(given: Mapping[str, object]) -> None:
    unsupported = [name for name, value in given.items() if not _is_unused(name, value)]
    if unsupported:
        listed = ", ".join(f"{name}={given[name]!r}" for name in unsupported)
        raise TypeError(f"simulate_fmu({listed}): not supported remotely; the FMU runs in a sandbox on the gateway, "
                        "so there is no local FMU instance, callback or process for these. Leave them at FMPy's "
                        "defaults, or use the real fmpy for this call.")


def _is_unused(name: str, value: object) -> bool:
    default = _LOCAL_ONLY[name]
    if name == "remote_platform":  # None (no remoting) is what the gateway does anyway
        return value in ("auto", None)
    return value is None if default is None else value is default or value == default


def _number(value: float | str | None) -> float | None:
    # FMPy takes times and tolerances as numbers or numeric strings.
    return None if value is None else float(value)


def _uploaded(gateway: FMUGatewayClient, filename: FmuInput, path: PathLike[str] | None) -> FmuSummary:
    if path is not None:
        return gateway.fmus.ensure_uploaded(path)
    return filename if isinstance(filename, FmuSummary) else gateway.fmus.get(str(filename))


def _as_fmpy_result(table: np.ndarray[Any, Any], path: PathLike[str]) -> np.ndarray[Any, Any]:
    """FMPy's own result type (a structured array that knows its ``modelDescription``, which
    ``plot_result`` reads units from) when FMPy is installed; the plain array otherwise."""
    try:
        from fmpy.model_description import read_model_description as read
        from fmpy.simulation import SimulationResult
    except ImportError:
        return table
    result: np.ndarray[Any, Any] = table.view(SimulationResult)
    result.modelDescription = read(path, validate=False)  # type: ignore[attr-defined]
    return result
