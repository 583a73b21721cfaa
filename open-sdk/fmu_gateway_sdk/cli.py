"""``fmu-gateway``: the API from the shell.

Exit codes: 0 success; 1 the API or the run reported an error (the problem goes to stderr);
2 a usage error (bad option, unknown output format, no API key).
"""

from __future__ import annotations

import csv
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast

import anyio
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fmu_gateway_sdk._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from fmu_gateway_sdk._client import AsyncFMUGatewayClient, FMUGatewayClient, local_fmu_path
from fmu_gateway_sdk._fmu_file import PROGRESS_MIN_BYTES
from fmu_gateway_sdk.auth import API_KEY_ENV
from fmu_gateway_sdk.errors import APIError, FMUGatewayError, RunFailedError
from fmu_gateway_sdk.models import Fmu, FmuSummary, Grant, ResultFormat, Run, RunStatus, SweepMethod
from fmu_gateway_sdk.resources.runs import LONG_POLL_S

app = typer.Typer(
    name="fmu-gateway",
    help="FMU Gateway from the shell: upload FMUs, run them and sweep their parameters, fetch their results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_API_ERROR = 1
EXIT_USAGE = 2

RESULT_FORMATS: dict[str, ResultFormat] = {
    ".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow",
    ".ipc": "arrow", ".json": "json",
}

class FmiTypeChoice(str, Enum):
    CoSimulation = "CoSimulation"
    ModelExchange = "ModelExchange"


class SolverChoice(str, Enum):
    CVode = "CVode"
    Euler = "Euler"


class StatusChoice(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"


QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only ids, one per line.")]


@dataclass
class _Options:
    api_key: str | None
    base_url: str | None
    timeout: float
    max_retries: int


def _out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@app.callback()
def _main(
    ctx: typer.Context,
    api_key: Annotated[str | None, typer.Option(envvar=API_KEY_ENV, show_default=False,
                                                help="API key.")] = None,
    base_url: Annotated[str | None, typer.Option(
        envvar="FMU_GATEWAY_URL", show_default=False,
        help="Server URL [default: http://127.0.0.1:8000].")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the client waits for each HTTP response.")
                       ] = DEFAULT_TIMEOUT,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries of a failed request.")] = DEFAULT_MAX_RETRIES,
) -> None:
    ctx.obj = _Options(api_key, base_url, timeout, max_retries)


ClientT = TypeVar("ClientT", FMUGatewayClient, AsyncFMUGatewayClient)


def _client(ctx: typer.Context) -> FMUGatewayClient:
    return _configured(ctx, FMUGatewayClient)


def _configured(ctx: typer.Context, kind: type[ClientT]) -> ClientT:
    options: _Options = ctx.obj
    try:
        return kind(options.api_key, options.base_url, timeout=options.timeout, max_retries=options.max_retries)
    except FMUGatewayError as exc:
        _err().print(f"error: {escape(exc.message)}", markup=True)
        raise typer.Exit(EXIT_USAGE) from exc


def _report(exc: FMUGatewayError) -> NoReturn:
    err = _err()
    err.print(f"[bold red]error:[/] {escape(str(exc.message))}")
    if exc.code:
        err.print(f"  code: {escape(exc.code)}")
    if isinstance(exc, APIError):
        for key in ("variable", "field", "scope", "required", "retry_after"):
            if exc.problem.get(key) is not None:
                err.print(f"  {key}: {escape(str(exc.problem[key]))}")
    if isinstance(exc, RunFailedError):
        err.print(f"  run: {exc.run.id}")
        if exc.log:
            err.print("  last lines of the run log:")
            for line in exc.log.rstrip().splitlines()[-10:]:
                err.print(f"    {escape(line)}")
    if exc.request_id:
        err.print(f"  request id: {escape(exc.request_id)}")
    raise typer.Exit(EXIT_API_ERROR)


@contextmanager
def _session(ctx: typer.Context) -> Iterator[FMUGatewayClient]:
    """A client for one command; API and run errors become exit code 1 with the problem on stderr."""
    client = _client(ctx)
    try:
        yield client
    except FMUGatewayError as exc:
        _report(exc)
    finally:
        client.close()


def _parse_value(text: str) -> bool | int | float | str:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# A command's --timeout used to be the run's wall-clock limit: it still is, said to be deprecated.
DeprecatedTimeoutOption = Annotated[float | None, typer.Option("--timeout", hidden=True, show_default=False)]
StepSizeOption = Annotated[float | None, typer.Option(
    help="Fixed step size of the Euler solver (ModelExchange).", show_default=False)]


def _run_timeout(run_timeout: float | None, deprecated: float | None) -> float | None:
    if deprecated is None:
        return run_timeout
    if run_timeout is not None:
        raise typer.BadParameter("give --run-timeout only (--timeout is its deprecated name)",
                                 param_hint="--timeout")
    _err().print("warning: the command's --timeout is deprecated: it is the run's wall-clock limit, "
                 "--run-timeout (fmu-gateway --timeout before the command is the HTTP timeout)")
    return deprecated


def _start_values(assignments: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {assignment!r}", param_hint="--set")
        values[name.strip()] = _parse_value(value)
    return values


def _read_input_csv(path: Path) -> dict[str, list[Any]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise typer.BadParameter(f"{path} is empty", param_hint="--input-file")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if "time" not in header:
        raise typer.BadParameter(f"{path} has no 'time' column", param_hint="--input-file")
    return {name: [_parse_value(row[i]) for row in body if row] for i, name in enumerate(header)}


def _result_format(output: Path) -> ResultFormat:
    fmt = RESULT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise typer.BadParameter(f"{output.name}: use one of {', '.join(RESULT_FORMATS)}", param_hint="--output")
    return fmt


def _auto_progress(path: Path) -> bool:
    return _err().is_terminal and path.stat().st_size >= PROGRESS_MIN_BYTES


def _resolve_fmu(client: FMUGatewayClient, fmu: str) -> Fmu:
    path = local_fmu_path(fmu)
    return client.fmus.upload(path, progress=_auto_progress(path)) if path is not None else client.fmus.get(fmu)


def _fmi_label(fmu: FmuSummary) -> str:
    kinds = [k for k, ok in (("ME", fmu.supports_model_exchange), ("CS", fmu.supports_co_simulation)) if ok]
    return f"FMI {fmu.fmi_version} {'+'.join(kinds)}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _table(*columns: str, caption: str | None = None, no_wrap: tuple[str, ...] = ()) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, caption=caption)
    for name in columns:
        table.add_column(name, no_wrap=name in no_wrap)
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _print_head(client: FMUGatewayClient, run: Run, head: int) -> None:
    table_json = json.loads(client.runs.download_result(run, format="json"))
    columns: list[str] = table_json["columns"]
    rows: int = table_json["rows"]
    table = _table(*columns, caption=f"{min(head, rows)} of {rows} rows" if rows > head else None)
    for i in range(min(head, rows)):
        table.add_row(*(_cell(table_json["data"][c][i]) for c in columns))
    _out().print(table)


def _run_summary(run: Run) -> str:
    timing = f" in {run.timings.run_s:.3g} s" if run.timings.run_s is not None else ""
    rows = f", {run.result.rows} rows" if run.result is not None else ""
    return f"{run.id} {run.status}{timing}{rows}"


@app.command()
def upload(ctx: typer.Context,
           paths: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help=".fmu files")],
           progress: Annotated[bool | None, typer.Option("--progress/--no-progress", show_default=False,
                                                         help="Progress bar [default: for large files, "
                                                              "on a terminal]")] = None,
           quiet: QuietOption = False) -> None:
    """Upload FMUs (bytes the server already has are not sent again)."""
    with _session(ctx) as client:
        for path in paths:
            fmu = client.fmus.upload(path, progress=_auto_progress(path) if progress is None else progress)
            if quiet:
                _out().print(fmu.id)
            else:
                _out().print(f"{fmu.id}  {escape(fmu.model_name)}  {_fmi_label(fmu)}  {escape(str(path))}")


@app.command("ls")
def list_fmus(ctx: typer.Context,
              limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
              quiet: QuietOption = False) -> None:
    """List your FMUs, newest first."""
    with _session(ctx) as client:
        fmus = list(islice(client.fmus.list(page_size=min(limit, 100)), limit))
        if quiet:
            for fmu in fmus:
                _out().print(fmu.id)
            return
        table = _table("id", "model", "FMI", "file", "size", "uploaded", no_wrap=("id", "uploaded"))
        for fmu in fmus:
            table.add_row(fmu.id, escape(fmu.model_name), _fmi_label(fmu), escape(fmu.filename or ""),
                          _size(fmu.size), fmu.created_at.strftime("%Y-%m-%d %H:%M"))
        _out().print(table)


@app.command()
def info(ctx: typer.Context,
         fmu: Annotated[str, typer.Argument(help="FMU id, or a .fmu file (uploaded if new)")]) -> None:
    """An FMU's model information and variables."""
    with _session(ctx) as client:
        detail = _resolve_fmu(client, fmu)
        out = _out()
        out.print(f"[bold]{escape(detail.model_name)}[/]  {detail.id}")
        if detail.description:
            out.print(escape(detail.description))
        experiment = detail.default_experiment
        facts = {
            "FMI": _fmi_label(detail), "generated by": detail.generation_tool, "file": detail.filename,
            "size": _size(detail.size), "sha256": detail.sha256, "platforms": ", ".join(detail.platforms),
            "default experiment": ", ".join(f"{k}={v:g}" for k, v in experiment.model_dump().items()
                                            if isinstance(v, int | float)) if experiment else None,
        }
        for key, value in facts.items():
            if value:
                out.print(f"  {key}: {escape(str(value))}")
        table = _table("name", "causality", "variability", "type", "start", "unit", "description", no_wrap=("name",))
        # A large model's own response holds its first variables only; page through the rest.
        variables = detail.variables if detail.variables_complete else client.fmus.variables(detail)
        for v in variables:
            table.add_row(escape(v.name), v.causality, v.variability, v.type, escape(_cell(v.start)),
                          escape(v.unit or ""), escape(v.description or ""))
        out.print(table)


@app.command()
def run(ctx: typer.Context,
        fmu: Annotated[str, typer.Argument(help="FMU id, or a .fmu file (uploaded if new)")],
        set_: Annotated[list[str] | None, typer.Option("--set", metavar="NAME=VALUE",
                                                       help="Start value of a parameter (repeatable).")] = None,
        start_time: Annotated[float | None, typer.Option(show_default=False)] = None,
        stop_time: Annotated[float | None, typer.Option(show_default=False)] = None,
        output_interval: Annotated[float | None, typer.Option(show_default=False)] = None,
        fmi_type: Annotated[FmiTypeChoice | None, typer.Option(show_default=False)] = None,
        solver: Annotated[SolverChoice | None, typer.Option(help="Integrator for ModelExchange.",
                                                            show_default=False)] = None,
        relative_tolerance: Annotated[float | None, typer.Option(show_default=False)] = None,
        output_variable: Annotated[list[str] | None, typer.Option(metavar="NAME",
                                                                  help="Variable to record (repeatable).")] = None,
        input_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                        help="CSV input table: a 'time' column plus inputs.")] = None,
        step_size: StepSizeOption = None,
        run_timeout: Annotated[float | None, typer.Option(help="Wall-clock limit of the run on the server, seconds.",
                                                          show_default=False)] = None,
        timeout: DeprecatedTimeoutOption = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Save the result: .csv, .parquet, "
                                                    ".arrow or .json", show_default=False)] = None,
        head: Annotated[int, typer.Option(min=0, help="Rows to print when not saving.")] = 10,
        quiet: QuietOption = False) -> None:
    """Simulate an FMU and save or print the result."""
    fmt = _result_format(output) if output is not None else None
    limit = _run_timeout(run_timeout, timeout)
    start_values = _start_values(set_ or [])
    input_table = _read_input_csv(input_file) if input_file is not None else None
    with _session(ctx) as client:
        target = _resolve_fmu(client, fmu)
        submitted = client.runs.create(
            target, start_values=start_values, start_time=start_time, stop_time=stop_time,
            output_interval=output_interval, step_size=step_size, output=output_variable, input=input_table,
            fmi_type=fmi_type.value if fmi_type else None,
            solver=solver.value if solver else None, relative_tolerance=relative_tolerance,
            run_timeout=limit, wait=LONG_POLL_S)
        finished = submitted if submitted.finished else client.runs.wait(submitted)
        if not finished.succeeded:
            raise RunFailedError(finished, log=client.runs.log(finished), request_id=finished.request_id)
        _emit_result(client, finished, output, fmt, head, quiet)


def _emit_result(client: FMUGatewayClient, finished: Run, output: Path | None, fmt: ResultFormat | None,
                 head: int, quiet: bool) -> None:
    if output is not None and fmt is not None:
        output.write_bytes(client.runs.download_result(finished, format=fmt))
    if quiet:
        _out().print(finished.id)
        return
    if output is not None:
        _err().print(f"{_run_summary(finished)} -> {escape(str(output))}")
    else:
        _err().print(_run_summary(finished))
        if head:
            _print_head(client, finished, head)


class MethodChoice(str, Enum):
    grid = "grid"
    lhs = "lhs"
    sobol = "sobol"
    random = "random"


def _ranges(assignments: list[str]) -> dict[str, dict[str, Any]]:
    ranges: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        name, sep, span = assignment.partition("=")
        low, colon, high = span.partition(":")
        if not sep or not colon or not name.strip():
            raise typer.BadParameter(f"expected NAME=MIN:MAX, got {assignment!r}", param_hint="--param")
        ranges[name.strip()] = {"min": _parse_value(low), "max": _parse_value(high)}
    return ranges


def _value_lists(assignments: list[str]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for assignment in assignments:
        name, sep, listed = assignment.partition("=")
        if not sep or not name.strip() or not listed.strip():
            raise typer.BadParameter(f"expected NAME=V1,V2,..., got {assignment!r}", param_hint="--value")
        values[name.strip()] = [_parse_value(v) for v in listed.split(",")]
    return values


SWEEP_FORMATS = {suffix: fmt for suffix, fmt in RESULT_FORMATS.items() if fmt != "json"}


@app.command()
def sweep(ctx: typer.Context,
          fmu: Annotated[str, typer.Argument(help="FMU id, or a .fmu file (uploaded if new)")],
          method: Annotated[MethodChoice | None, typer.Option(
              help="grid with --value; lhs, sobol or random with --param and --samples.",
              show_default=False)] = None,
          param: Annotated[list[str] | None, typer.Option(
              "--param", metavar="NAME=MIN:MAX", help="Range of a sampled parameter (repeatable).")] = None,
          value: Annotated[list[str] | None, typer.Option(
              "--value", metavar="NAME=V1,V2,...", help="Values of a grid parameter (repeatable).")] = None,
          samples: Annotated[int | None, typer.Option(min=1, show_default=False)] = None,
          seed: Annotated[int | None, typer.Option(min=0, show_default=False)] = None,
          set_: Annotated[list[str] | None, typer.Option("--set", metavar="NAME=VALUE",
                                                         help="Start value every run shares (repeatable).")] = None,
          start_time: Annotated[float | None, typer.Option(show_default=False)] = None,
          stop_time: Annotated[float | None, typer.Option(show_default=False)] = None,
          output_interval: Annotated[float | None, typer.Option(show_default=False)] = None,
          output_variable: Annotated[list[str] | None, typer.Option(
              metavar="NAME", help="Variable to record (repeatable).")] = None,
          step_size: StepSizeOption = None,
          run_timeout: Annotated[float | None, typer.Option(
              help="Wall-clock limit of each run on the server, seconds.", show_default=False)] = None,
          timeout: DeprecatedTimeoutOption = None,
          out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the long table: .csv, .parquet or "
                                                   ".arrow", show_default=False)] = None,
          summary: Annotated[Path | None, typer.Option(help="Save the summary (one row per run): .csv, .parquet "
                                                       "or .arrow", show_default=False)] = None,
          progress: Annotated[bool, typer.Option(help="Progress bar on stderr [default: when a terminal].",
                                                 show_default=False)] = False,
          quiet: QuietOption = False) -> None:
    """Run a parameter sweep: one run per grid point or sample, then save or print its tables."""
    if param and value:
        raise typer.BadParameter("give --value (grid) or --param (lhs, sobol, random), not both", param_hint="--param")
    chosen = method.value if method else ("grid" if value or not param else "sobol")
    if chosen == "grid" and not value:
        raise typer.BadParameter("a grid needs --value NAME=V1,V2,...", param_hint="--value")
    if chosen != "grid" and (not param or samples is None):
        raise typer.BadParameter(f"{chosen} needs --param NAME=MIN:MAX and --samples", param_hint="--param")
    formats = {path: _table_format(path) for path in (out, summary) if path is not None}
    limit = _run_timeout(run_timeout, timeout)
    parameters: dict[str, Any] = _value_lists(value or []) if chosen == "grid" else _ranges(param or [])
    with _session(ctx) as client:
        target = _resolve_fmu(client, fmu)
        created = client.sweeps.create(
            target, parameters=parameters, method=cast(SweepMethod, chosen),
            samples=samples, seed=seed, start_values=_start_values(set_ or []), start_time=start_time,
            stop_time=stop_time, output_interval=output_interval, step_size=step_size, output=output_variable,
            run_timeout=limit)
        done = client.sweeps.wait(created, progress=progress or _err().is_terminal)
        if out is not None:
            out.write_bytes(client.sweeps.download_result(done, format=formats[out]))
        if summary is not None:
            summary.write_bytes(client.sweeps.download_summary(done, format=formats[summary]))
        if quiet:
            _out().print(done.id)
            return
        counts = done.counts
        line = (f"{done.id} {done.status}: {counts.succeeded} succeeded, {counts.failed + counts.timed_out} failed, "
                f"{counts.cancelled} cancelled")
        _err().print(line + "".join(f" -> {escape(str(p))}" for p in formats))
        if out is None and summary is None:
            _print_summary(client.sweeps.download_summary(done, format="json"))


def _table_format(path: Path) -> Any:
    fmt = SWEEP_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise typer.BadParameter(f"{path.name}: use one of {', '.join(SWEEP_FORMATS)}", param_hint="--out")
    return fmt


def _print_summary(summary_json: bytes) -> None:
    body = json.loads(summary_json)
    columns: list[str] = [c for c in body["columns"] if c != "run_id"]
    table = _table(*columns)
    for i in range(body["rows"]):
        table.add_row(*(_cell(body["data"][c][i]) for c in columns))
    _out().print(table)


@app.command()
def runs(ctx: typer.Context,
         status: Annotated[StatusChoice | None, typer.Option(show_default=False)] = None,
         fmu: Annotated[str | None, typer.Option(help="Only runs of this FMU id.", show_default=False)] = None,
         limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
         quiet: QuietOption = False) -> None:
    """List your runs, newest first."""
    run_status: RunStatus | None = status.value if status else None
    with _session(ctx) as client:
        found = list(islice(client.runs.list(status=run_status, fmu=fmu, page_size=min(limit, 100)), limit))
        if quiet:
            for r in found:
                _out().print(r.id)
            return
        table = _table("id", "fmu", "status", "created", "run s", "error", no_wrap=("id", "fmu", "status", "created"))
        for r in found:
            run_s = f"{r.timings.run_s:.3f}" if r.timings.run_s is not None else ""
            table.add_row(r.id, r.fmu_id, r.status, r.created_at.strftime("%Y-%m-%d %H:%M"), run_s,
                          escape(r.error.code if r.error else ""))
        _out().print(table)


@app.command()
def result(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
           output: Annotated[Path | None, typer.Option("--output", "-o", help="Save to .csv, .parquet, .arrow "
                                                       "or .json", show_default=False)] = None,
           head: Annotated[int, typer.Option(min=0, help="Rows to print when not saving.")] = 10) -> None:
    """Save or print the result of a run."""
    fmt = _result_format(output) if output is not None else None
    with _session(ctx) as client:
        finished = client.runs.get(run_id)
        if finished.finished and not finished.succeeded:
            raise RunFailedError(finished, log=client.runs.log(finished), request_id=finished.request_id)
        _emit_result(client, finished, output, fmt, head, quiet=False)


@app.command()
def log(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN_ID")]) -> None:
    """Print the log of a run."""
    with _session(ctx) as client:
        typer.echo(client.runs.log(run_id), nl=False)


@app.command()
def cancel(ctx: typer.Context, run_id: Annotated[str, typer.Argument(metavar="RUN_ID")]) -> None:
    """Cancel a queued or running run."""
    with _session(ctx) as client:
        _out().print(_run_summary(client.runs.cancel(run_id)))


@app.command()
def delete(ctx: typer.Context, fmu_id: Annotated[str, typer.Argument(metavar="FMU_ID")]) -> None:
    """Delete an FMU."""
    with _session(ctx) as client:
        client.fmus.delete(fmu_id)
        _err().print(f"deleted {escape(fmu_id)}")


@app.command()
def share(ctx: typer.Context,
          fmu_id: Annotated[str, typer.Argument(metavar="FMU_ID")],
          email: Annotated[str | None, typer.Argument(help="Who may run it: the email of their account.",
                                                      show_default=False)] = None,
          price: Annotated[int | None, typer.Option(min=0, help="Credits each of their runs that succeeds pays "
                                                    "you [default: 0].", show_default=False)] = None,
          list_: Annotated[bool, typer.Option("--list", help="List the FMU's grants.")] = False,
          revoke: Annotated[str | None, typer.Option(metavar="GRANT_ID", help="Revoke this grant.",
                                                     show_default=False)] = None,
          quiet: QuietOption = False) -> None:
    """Let another user run your FMU at a price per run; or --list its grants, or --revoke one."""
    if sum((email is not None, list_, revoke is not None)) != 1:
        raise typer.BadParameter("give EMAIL (to share), --list or --revoke GRANT_ID: one of them", param_hint="EMAIL")
    if price is not None and email is None:
        raise typer.BadParameter("--price goes with EMAIL", param_hint="--price")
    with _session(ctx) as client:
        if email is not None:
            grants = [client.fmus.share(fmu_id, email=email, price_credits_per_run=price or 0)]
        elif revoke is not None:
            grants = [client.fmus.revoke_grant(fmu_id, revoke)]
        else:
            grants = client.fmus.grants(fmu_id)
        if quiet:
            for grant in grants:
                _out().print(grant.id)
            return
        _print_grants(grants)


def _print_grants(grants: list[Grant]) -> None:
    table = _table("id", "email", "price", "runs", "earned", "granted", "revoked", no_wrap=("id", "granted", "revoked"))
    for grant in grants:
        table.add_row(grant.id, escape(grant.email), str(grant.price_credits_per_run), str(grant.runs),
                      str(grant.earned_credits), grant.created_at.strftime("%Y-%m-%d %H:%M"),
                      grant.revoked_at.strftime("%Y-%m-%d %H:%M") if grant.revoked_at else "")
    _out().print(table)


@app.command()
def balance(ctx: typer.Context) -> None:
    """Print your credit balance."""
    with _session(ctx) as client:
        _out().print(str(client.billing.balance().credits))


class TransportChoice(str, Enum):
    stdio = "stdio"
    http = "http"


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("mcp")
def mcp_command(ctx: typer.Context,
                transport: Annotated[TransportChoice, typer.Option(
                    help="stdio: the MCP client starts this command and talks over its stdin/stdout; http: "
                         "streamable HTTP at http://HOST:PORT/mcp.")] = TransportChoice.stdio,
                host: Annotated[str, typer.Option(help="Address the http transport listens on.")] = "127.0.0.1",
                port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the http transport.")] = 8765,
                ) -> None:
    """Serve FMU Gateway to AI agents over the Model Context Protocol (docs/mcp.md); the API key and URL
    are this command's (--api-key, FMU_GATEWAY_API_KEY, ...), never the agent's."""
    try:
        from fmu_gateway_sdk import mcp_server
    except ImportError as exc:
        _err().print(f"error: fmu-gateway mcp needs the mcp package ({escape(str(exc))}): "
                     "pip install 'fmu-gateway-sdk[mcp]'")
        raise typer.Exit(EXIT_USAGE) from exc
    client = _configured(ctx, AsyncFMUGatewayClient)
    if transport is TransportChoice.http:
        if not _is_loopback(host):
            # The HTTP transport has no authentication of its own: whoever reaches it uses this API key.
            _err().print(f"warning: serving on {escape(host)}, beyond this machine: anyone who can reach it "
                         "acts with your API key")
        _err().print(f"FMU Gateway MCP server at http://{escape(host)}:{port}/mcp")
    anyio.run(partial(mcp_server.serve, client, transport=transport.value, host=host, port=port))


def main() -> None:
    app()
