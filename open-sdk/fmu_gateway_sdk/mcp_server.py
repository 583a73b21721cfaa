"""``fmu-gateway mcp``: FMU Gateway as tools for AI agents, over the Model Context Protocol (docs/mcp.md).

An MCP client (a desktop assistant, an IDE, an agent framework) starts ``fmu-gateway mcp`` and calls
its tools: ``list_models``, ``describe_model``, ``simulate``, ``sweep``, ``sweep_summary``, ``balance``
and ``quote``. The gateway's URL and API key are the server's own configuration (``FMU_GATEWAY_URL``,
``FMU_GATEWAY_API_KEY``, read as ``FMUGatewayClient()`` reads them), never a tool's argument: an agent
acts as the user who configured the server and as no one else. Results are compact summaries (a
run's final values and extremes, a link to its table), never the rows, which would flood the
agent's context. Every input schema is closed (no extra properties) and bounded.

Needs the ``mcp`` extra: ``pip install 'fmu-gateway-sdk[mcp]'``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote as url_quote

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic import ValidationError as ArgumentsError

from fmu_gateway_sdk._client import AsyncFMUGatewayClient
from fmu_gateway_sdk._run_request import RunOptions
from fmu_gateway_sdk._version import __version__
from fmu_gateway_sdk.errors import APIError, FMUGatewayError, RunFailedError, WaitTimeoutError
from fmu_gateway_sdk.models import (
    APIModel,
    Balance,
    FmuSummary,
    Quote,
    SweepMethod,
    Variable,
    page_from_response,
)
from fmu_gateway_sdk.resources.fmus import fmu_path

__all__ = ["TOOLS", "Transport", "build_server", "call_tool", "serve"]

Transport = Literal["stdio", "http"]

#: How long ``simulate`` waits for its run before answering with the run still going.
SIMULATE_WAIT_S = 300.0
#: Outputs ``simulate`` summarises; a model recording more says how many were left out.
MAX_SUMMARISED_OUTPUTS = 50
LOG_TAIL_LINES = 10

INSTRUCTIONS = (
    "FMU Gateway simulates FMUs (FMI 2.0/3.0 models) on a server, billed in credits. Find a model with "
    "list_models, learn its variable names and units with describe_model, then simulate it (one run, waited "
    "for) or sweep its parameters (many runs, not waited for: follow with sweep_summary). quote tells what a "
    "run or sweep would hold before anything is placed; balance tells the credits left. Results are "
    "summaries; the full tables are at the result_url links, for a client holding the API key."
)


# -- arguments: every object closed (extra="forbid" -> additionalProperties: false) and bounded

class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


FmuId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                             description="The model's id, as list_models gives it (fmu_...).")]
VariableName = Annotated[str, Field(min_length=1, max_length=200)]
ScalarValue = bool | int | Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, Field(max_length=1000)]
Time = Annotated[float, Field(ge=-1e15, le=1e15, allow_inf_nan=False)]
Cursor = Annotated[str, Field(min_length=1, max_length=200,
                              description="next_cursor of the previous page; leave out for the first page.")]


def _page_size(default: int, maximum: int) -> Any:
    return Field(default, ge=1, le=maximum, description=f"Items per page (at most {maximum}).")


class ListModelsArguments(_Arguments):
    cursor: Cursor | None = None
    limit: int = _page_size(20, 100)


class DescribeModelArguments(_Arguments):
    fmu_id: FmuId
    query: str | None = Field(None, min_length=1, max_length=200, description=(
        "Only variables whose name or description contains this text (any case), e.g. 'temperature'."))
    cursor: Cursor | None = None
    limit: int = _page_size(50, 200)


class RunArguments(_Arguments):
    """The settings of one simulation, named as fmpy.simulate_fmu names them; each left out is the
    model's DefaultExperiment (else FMPy's default)."""

    fmu_id: FmuId
    start_values: dict[VariableName, ScalarValue] | None = Field(None, max_length=200, description=(
        "Start values by variable name (parameters, and inputs or states with a start value), e.g. "
        "{\"mu\": 2.5}. Names and types as describe_model lists them."))
    start_time: Time | None = Field(None, description="Start of the simulation, in model time.")
    stop_time: Time | None = Field(None, description="End of the simulation, in model time.")
    output_interval: float | None = Field(None, gt=0, le=1e15, allow_inf_nan=False, description=(
        "Model time between two rows of the result."))
    output: list[VariableName] | None = Field(None, min_length=1, max_length=200, description=(
        "Variables to record; default: the model's outputs."))

    def run_options(self) -> RunOptions:
        return {"start_values": self.start_values, "start_time": self.start_time, "stop_time": self.stop_time,
                "output_interval": self.output_interval, "output": self.output}


class ParameterRange(_Arguments):
    min: int | Annotated[float, Field(allow_inf_nan=False)]
    max: int | Annotated[float, Field(allow_inf_nan=False)]


GridValues = Annotated[list[ScalarValue], Field(min_length=1, max_length=1000)]
Sample = Annotated[dict[VariableName, ScalarValue], Field(min_length=1, max_length=100)]
ParameterSpace = (Annotated[dict[VariableName, GridValues | ParameterRange], Field(min_length=1, max_length=32)]
                  | Annotated[list[Sample], Field(min_length=1, max_length=10_000)])


class SweepArguments(RunArguments):
    parameters: ParameterSpace = Field(description=(
        "The parameter space. grid: value lists by name, every combination runs, e.g. {\"mu\": [0.5, 1, 2]}. "
        "lhs, sobol, random: ranges by name, e.g. {\"mu\": {\"min\": 0.1, \"max\": 2}}, with samples. "
        "list: a list of start-value objects, one run each, e.g. [{\"mu\": 1, \"x0\": 2}]."))
    method: SweepMethod = Field("grid", description="How parameters becomes runs (see parameters).")
    samples: int | None = Field(None, ge=1, le=10_000, description="Number of runs drawn (lhs, sobol, random).")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed of lhs, sobol or random draws.")


class QuoteArguments(SweepArguments):
    parameters: ParameterSpace | None = Field(None, description=(  # type: ignore[assignment]
        "Leave out to quote one run; give a sweep's parameter space (as for sweep) to quote the sweep."))


class SweepSummaryArguments(_Arguments):
    sweep_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                          description="The sweep's id, as sweep returned it (swp_...).")
    limit: int = Field(50, ge=1, le=500, description="Rows of the per-run summary to return (at most 500).")


class NoArguments(_Arguments):
    pass


# -- results

class ModelSummary(BaseModel):
    id: str
    name: str
    fmi_version: str
    variable_count: int | None = None
    description: str | None = None
    shared_by: str | None = Field(None, description="Set when another user shared the model with you.")
    price_credits_per_run: int | None = Field(None, description="A shared model's price per succeeded run.")


class ModelList(BaseModel):
    models: list[ModelSummary]
    next_cursor: str | None = None


class VariableSummary(BaseModel):
    name: str
    causality: str
    variability: str
    type: str
    start: JsonValue = None
    unit: str | None = None
    description: str | None = None


class Experiment(BaseModel):
    start_time: float | None = None
    stop_time: float | None = None
    tolerance: float | None = None
    step_size: float | None = None


class ModelDescription(ModelSummary):
    generation_tool: str | None = None
    supports_co_simulation: bool
    supports_model_exchange: bool
    default_experiment: Experiment | None = None
    variables: list[VariableSummary] = Field(description="This page of the variables, in model order.")
    next_cursor: str | None = None


class OutputSummary(BaseModel):
    final: JsonValue = Field(description="The value in the last row.")
    min: float | None = None
    max: float | None = None


class SimulationSummary(BaseModel):
    run_id: str
    status: str
    rows: int | None = None
    final_time: float | None = None
    outputs: dict[str, OutputSummary] = Field(default_factory=dict)
    outputs_omitted: int | None = Field(None, description="Recorded outputs not summarised here.")
    credits_charged: int
    cached_from: str | None = Field(None, description="Served from the run cache: the earlier run computed it.")
    result_url: str = Field(description="The whole table as CSV (GET with the API key).")
    note: str | None = None


class SweepCreated(BaseModel):
    sweep_id: str
    status: str
    method: str
    total: int = Field(description="Number of runs.")
    seed: int | None = None
    credits_held: int


class SweepTable(BaseModel):
    columns: list[str]
    rows: list[dict[str, JsonValue]]
    total_rows: int
    truncated: bool


class SweepProgress(BaseModel):
    sweep_id: str
    status: str
    total: int
    counts: dict[str, int]
    progress: float
    credits_held: int
    credits_charged: int
    summary: SweepTable | None = Field(None, description=(
        "Once finished, one row per run: sweep_index, run_id, status, error_code, the parameters, then "
        "final(<output>), min(<output>), max(<output>)."))
    summary_url: str
    result_url: str


# -- the tools

@dataclass(frozen=True)
class GatewayTool:
    name: str
    title: str
    description: str
    arguments: type[_Arguments]
    result: type[BaseModel]
    call: Callable[[AsyncFMUGatewayClient, Any], Awaitable[BaseModel]]
    read_only: bool = True

    def definition(self) -> types.Tool:
        return types.Tool(
            name=self.name, title=self.title, description=self.description,
            input_schema=self.arguments.model_json_schema(), output_schema=self.result.model_json_schema(),
            annotations=types.ToolAnnotations(title=self.title, read_only_hint=self.read_only,
                                              destructive_hint=False, idempotent_hint=self.read_only,
                                              open_world_hint=False))


M = TypeVar("M", bound=APIModel)


async def _page(client: AsyncFMUGatewayClient, path: str, model: type[M],
                params: dict[str, str | int | None]) -> tuple[list[M], str | None]:
    # One page, with the API's own cursor: the resources' iterators would fetch every page.
    return page_from_response(model, await client._api.request("GET", path, params=params))


def _model_summary(fmu: FmuSummary) -> dict[str, Any]:
    return {"id": fmu.id, "name": fmu.model_name, "fmi_version": fmu.fmi_version,
            "variable_count": fmu.variable_count, "description": fmu.description, "shared_by": fmu.shared_by,
            "price_credits_per_run": fmu.price_credits_per_run}


async def list_models(client: AsyncFMUGatewayClient, args: ListModelsArguments) -> ModelList:
    found, cursor = await _page(client, "/v1/fmus", FmuSummary, {"limit": args.limit, "cursor": args.cursor})
    return ModelList(models=[ModelSummary.model_validate(_model_summary(fmu)) for fmu in found], next_cursor=cursor)


async def describe_model(client: AsyncFMUGatewayClient, args: DescribeModelArguments) -> ModelDescription:
    fmu = await client.fmus.get(args.fmu_id)
    variables, cursor = await _page(client, f"{fmu_path(args.fmu_id)}/variables", Variable,
                                    {"limit": args.limit, "cursor": args.cursor, "q": args.query})
    experiment = fmu.default_experiment
    return ModelDescription.model_validate({
        **_model_summary(fmu), "generation_tool": fmu.generation_tool,
        "supports_co_simulation": fmu.supports_co_simulation,
        "supports_model_exchange": fmu.supports_model_exchange,
        "default_experiment": experiment.model_dump(include=set(Experiment.model_fields)) if experiment else None,
        "variables": [v.model_dump(include=set(VariableSummary.model_fields)) for v in variables],
        "next_cursor": cursor})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def summarise_table(table: dict[str, Any]) -> tuple[float | None, dict[str, OutputSummary], int]:
    """From a result as ``?format=json`` gives it: the final time, each output's final value and
    extremes (numeric outputs), and how many outputs were left out beyond the bound."""
    data: dict[str, list[Any]] = table["data"]
    times = data.get("time") or []
    outputs = [name for name in table["columns"] if name != "time"]
    summaries: dict[str, OutputSummary] = {}
    for name in outputs[:MAX_SUMMARISED_OUTPUTS]:
        values = data[name]
        numbers = [n for n in map(_number, values) if n is not None]
        summaries[name] = OutputSummary(final=values[-1] if values else None, min=min(numbers, default=None),
                                        max=max(numbers, default=None))
    return _number(times[-1]) if times else None, summaries, max(0, len(outputs) - MAX_SUMMARISED_OUTPUTS)


def _run_result_url(client: AsyncFMUGatewayClient, run_id: str) -> str:
    return f"{client.base_url}/v1/runs/{url_quote(run_id, safe='')}/result?format=csv"


async def simulate(client: AsyncFMUGatewayClient, args: RunArguments) -> SimulationSummary:
    run = await client.runs.create(args.fmu_id, **args.run_options())
    summary = {"run_id": run.id, "result_url": _run_result_url(client, run.id)}
    try:
        run = await client.runs.wait(run, timeout=SIMULATE_WAIT_S)
    except WaitTimeoutError as exc:
        return SimulationSummary(**summary, status=exc.run.status, credits_charged=0,
                                 note=f"still {exc.run.status} after {SIMULATE_WAIT_S:g} s; it goes on, and its "
                                      "table will be at result_url")
    if not run.succeeded:
        raise RunFailedError(run, log=await _log(client, run.id), request_id=run.request_id)
    final_time, outputs, omitted = summarise_table(json.loads(await client.runs.download_result(run, format="json")))
    return SimulationSummary(**summary, status=run.status, rows=run.result.rows if run.result else None,
                             final_time=final_time, outputs=outputs, outputs_omitted=omitted or None,
                             credits_charged=run.credits_charged, cached_from=run.cached_from)


async def _log(client: AsyncFMUGatewayClient, run_id: str) -> str | None:
    try:
        return await client.runs.log(run_id)
    except FMUGatewayError:
        return None


def _space(args: SweepArguments) -> Any:
    return args.model_dump(include={"parameters"})["parameters"]


async def sweep(client: AsyncFMUGatewayClient, args: SweepArguments) -> SweepCreated:
    created = await client.sweeps.create(args.fmu_id, parameters=_space(args), method=args.method,
                                         samples=args.samples, seed=args.seed, **args.run_options())
    return SweepCreated(sweep_id=created.id, status=created.status, method=created.method, total=created.total,
                        seed=created.seed, credits_held=created.credits_held)


async def sweep_summary(client: AsyncFMUGatewayClient, args: SweepSummaryArguments) -> SweepProgress:
    current = await client.sweeps.get(args.sweep_id)
    base = f"{client.base_url}/v1/sweeps/{url_quote(current.id, safe='')}"
    table = None
    if current.finished:
        body = json.loads(await client.sweeps.download_summary(current, format="json"))
        columns: list[str] = body["columns"]
        shown = min(body["rows"], args.limit)
        table = SweepTable(columns=columns, rows=[{c: body["data"][c][i] for c in columns} for i in range(shown)],
                           total_rows=body["rows"], truncated=shown < body["rows"])
    return SweepProgress(sweep_id=current.id, status=current.status, total=current.total,
                         counts=current.counts.model_dump(include=set(type(current.counts).model_fields)),
                         progress=current.progress, credits_held=current.credits_held,
                         credits_charged=current.credits_charged, summary=table,
                         summary_url=f"{base}/summary?format=csv", result_url=f"{base}/result?format=csv")


async def balance(client: AsyncFMUGatewayClient, args: NoArguments) -> Balance:
    return await client.billing.balance()


async def quote(client: AsyncFMUGatewayClient, args: QuoteArguments) -> Quote:
    if args.parameters is None:
        return await client.runs.create(args.fmu_id, dry_run=True, **args.run_options())
    return await client.sweeps.create(args.fmu_id, parameters=_space(args), method=args.method,
                                      samples=args.samples, seed=args.seed, dry_run=True, **args.run_options())


TOOLS: tuple[GatewayTool, ...] = (
    GatewayTool(
        "list_models", "List models",
        "The simulation models (FMUs) you can run: your own and those other users shared with you (shared_by "
        "set, with their price per run). Each has an id for the other tools, its name, FMI version, variable "
        "count and description. Newest first, a page at a time: pass next_cursor back as cursor for more.",
        ListModelsArguments, ModelList, list_models),
    GatewayTool(
        "describe_model", "Describe a model",
        "A model's metadata, its default experiment (start/stop time, tolerance, step size) and its variables: "
        "name, causality (parameter, input, output, local, ...), variability, type, start value, unit, "
        "description. Use it to find the names simulate and sweep take. Variables come a page at a time "
        "(next_cursor); query filters them by name or description.",
        DescribeModelArguments, ModelDescription, describe_model),
    GatewayTool(
        "simulate", "Simulate a model",
        "Run one simulation and wait for it (up to 5 minutes). Returns a summary, not the rows: status, run_id, "
        "rows, the final time, each recorded output's final value and min/max, credits_charged, cached_from "
        "when an earlier identical run's result was reused, and result_url where the whole table is. Costs "
        "credits (see quote). Errors come back as a tool error with a code: insufficient_credits, "
        "unknown_variable, invalid_value, not_found, or the run's own (model_error, timed_out, ...).",
        RunArguments, SimulationSummary, simulate, read_only=False),
    GatewayTool(
        "sweep", "Start a parameter sweep",
        "Start many simulations of one model over a parameter space (grid, list, lhs, sobol or random) and "
        "return at once with the sweep's id and number of runs; it is not waited for. Follow it with "
        "sweep_summary. Every run shares the other settings (start_values, stop_time, output, ...). Holds "
        "credits for every run (see quote).",
        SweepArguments, SweepCreated, sweep, read_only=False),
    GatewayTool(
        "sweep_summary", "Sweep progress and summary",
        "A sweep's progress (runs per status) and, once it is finished, one summary row per run: its "
        "parameters and each output's final value, min and max, up to limit rows. The full tables are at "
        "summary_url and result_url.",
        SweepSummaryArguments, SweepProgress, sweep_summary),
    GatewayTool(
        "balance", "Credit balance",
        "Your credits left. A run holds its worst-case price when placed and is charged what it used when it ends.",
        NoArguments, Balance, balance),
    GatewayTool(
        "quote", "Quote a run or sweep",
        "What a simulation (or, given parameters, a sweep) would hold in credits, checked as if it were placed: "
        "runs, credits_per_run, credits_held, your balance and whether it suffices, and the validated settings. "
        "Nothing is run and nothing is held. Takes the arguments of simulate, or of sweep.",
        QuoteArguments, Quote, quote),
)


# -- the protocol side

def _problem(exc: FMUGatewayError) -> dict[str, Any]:
    problem: dict[str, Any] = {"code": exc.code or "error", "message": exc.detail, "status": exc.status,
                               "request_id": exc.request_id}
    if isinstance(exc, APIError):
        for key in ("variable", "field", "scope", "required", "retry_after", "errors"):
            if exc.problem.get(key) is not None:
                problem[key] = exc.problem[key]
    if isinstance(exc, RunFailedError):
        problem["run_id"] = exc.run.id
        if exc.log:
            problem["log_tail"] = exc.log.rstrip().splitlines()[-LOG_TAIL_LINES:]
    return {key: value for key, value in problem.items() if value is not None}


def _result(data: dict[str, Any], *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(data))],
                                structured_content=data, is_error=is_error)


def _error(code: str, message: str, **details: Any) -> types.CallToolResult:
    return _result({"code": code, "message": message, **details}, is_error=True)


TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}


async def call_tool(client: AsyncFMUGatewayClient, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
    """One tool call; whatever goes wrong comes back as an ``isError`` result with a ``code`` and a
    ``message``, for the agent to read and act on."""
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        return _error("unknown_tool", f"no tool {name!r}; the tools are {', '.join(TOOLS_BY_NAME)}")
    try:
        args = tool.arguments.model_validate(arguments or {})
    except ArgumentsError as exc:
        errors = [{"loc": ".".join(str(part) for part in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return _error("invalid_arguments", f"the arguments do not fit {name}'s input schema", errors=errors)
    try:
        result = await tool.call(client, args)
    except FMUGatewayError as exc:
        return _result(_problem(exc), is_error=True)
    return _result(result.model_dump(mode="json", exclude_none=True))


def build_server(client: AsyncFMUGatewayClient) -> Server[Any]:
    """The MCP server of the tools, each call made with ``client``."""
    definitions = {tool.name: tool.definition() for tool in TOOLS}

    async def on_list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                            ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(definitions.values()))

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        return await call_tool(client, params.name, params.arguments)

    def input_schema(name: str) -> dict[str, Any] | None:
        return definitions[name].input_schema if name in definitions else None

    return Server("fmu-gateway", version=__version__, title="FMU Gateway", instructions=INSTRUCTIONS,
                  get_tool_input_schema=input_schema, on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve(client: AsyncFMUGatewayClient, *, transport: Transport = "stdio", host: str = "127.0.0.1",
                port: int = 8765) -> None:
    """Serve the tools until the client disconnects (stdio) or the process is stopped (streamable
    HTTP at ``http://{host}:{port}/mcp``); ``client`` is closed afterwards."""
    server = build_server(client)
    async with client:
        if transport == "stdio":
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
            return
        import uvicorn

        # host also decides the DNS-rebinding protection: on for loopback addresses.
        app = server.streamable_http_app(host=host)
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()
