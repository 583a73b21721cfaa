"""Sandbox runner: simulates one FMU job with FMPy and writes the result as a NumPy array file.

Standalone script: it is bound into the sandbox as a single file, so it imports only the
standard library at module level and FMPy and NumPy inside functions (the host imports this
module for the protocol constants without loading FMPy). It never imports pyarrow: every run
is a process forked from a warm one, and what it costs (page tables copied, pages faulted, an
address space torn down) grows with what that process holds; pyarrow alone holds more than
FMPy, NumPy and lxml together. The host turns the array into the stored Arrow file
(``app/sandbox/result_file.py``).

Protocol, with the host on the other end of the pipes:
  1. start:  ``python -I -B runner.py --job-dir D --out-dir O --sandbox-id ID``; the process
     forks at once: the parent only supervises, the child is the runner proper
  2. runner: imports FMPy (the sandbox is now warm), writes ``{"event": "ready", ...}``
     as one JSON line to its control channel (the original stdout)
  3. host:   places ``D/fmu/`` (extracted FMU) and ``D/spec.json`` (RunSpec), writes
     ``go`` and a newline to the runner's stdin
  4. runner: writes ``{"event": "running"}``, simulates, writes ``O/result.npy``,
     writes ``{"event": "done", "ok": ..., "error_code": ..., "message": ...}``, exits 0
  5. supervisor: reaps the runner, writes ``{"event": "exit", "status": ..., "max_rss_bytes":
     ..., "cpu_time_s": ...}`` and ends the same way the runner did (same code or signal);
     if the host closes stdin while the runner still runs (the host died), it kills the runner;
     it is not dumpable, so the model cannot trace it or write its memory

``spec.json`` is a ``RunSpec`` (or a ``SweepChunk`` of them) in its wire form: the arguments of
``fmpy.simulate_fmu`` under FMPy's own names, versioned (``SPEC_VERSION``). The app builds it
(app/runs/spec.py) and stores it on the run; this module is its one definition.

Everything the model prints goes to stderr; the host captures it as the run log, together
with the FMU's logger messages.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import faulthandler
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

READY = "ready"
RUNNING = "running"
DONE = "done"
EXIT = "exit"
GO = b"go\n"
# The result: FMPy's structured array (a field per recorded variable, FMI 3 arrays as sub-arrays)
# in NumPy's .npy format, never pickled.
RESULT_SUFFIX = ".npy"
RESULT_FILE = "result" + RESULT_SUFFIX
# A sweep chunk: the spec holds the children ({"id", "spec"}) and the reset choice; per child the
# runner reports child_started, then child_done, and writes O/<id>.npy and O/<id>.log.
CHUNK_CHILDREN = "children"
CHILD_STARTED = "child_started"
CHILD_DONE = "child_done"
RESET_CHECKED = "reset_checked"
SPEC_FILE = "spec.json"
FMU_DIR = "fmu"
# Error codes the runner itself may report; the host maps everything else.
REPORTABLE_ERRORS = frozenset({"model_error", "memory_limit", "output_too_large", "runner_error"})

_STATUS_LABELS = ("OK", "WARNING", "DISCARD", "ERROR", "FATAL", "PENDING")
_NUMPY_TYPES = {
    "Real": "f8",
    "Float64": "f8",
    "Float32": "f4",
    "Integer": "i4",
    "Enumeration": "i4",
    "Int8": "i1",
    "UInt8": "u1",
    "Int16": "i2",
    "UInt16": "u2",
    "Int32": "i4",
    "UInt32": "u4",
    "Int64": "i8",
    "UInt64": "u8",
    "Boolean": "?",
}


class JobFailed(Exception):
    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# The wire form's version. 1 (no "version" key) named FMPy's ``output`` "outputs"; 2 says so and
# adds step_size, validate and debug_logging. Specs stored by an earlier release still read.
SPEC_VERSION = 2
# The RunSpec fields passed to fmpy.simulate_fmu as they are, in its signature's order.
SIMULATE_FMU_ARGUMENTS = ("validate", "start_time", "stop_time", "solver", "step_size", "relative_tolerance",
                          "output_interval", "fmi_type", "start_values", "input", "output", "debug_logging")


@dataclass(frozen=True)
class RunSpec:
    """One run: the keyword arguments of ``fmpy.simulate_fmu`` by FMPy's names and defaults (see
    its docstring), and what the host adds. Values are JSON's: it is stored on the run as
    ``to_wire()`` and the runner reads it back with ``from_wire``."""

    validate: bool = True
    start_time: float | None = None
    stop_time: float | None = None
    solver: str = "CVode"  # ModelExchange: "CVode" or "Euler"
    step_size: float | None = None  # ModelExchange: the Euler solver's step
    relative_tolerance: float | None = None
    output_interval: float | None = None
    fmi_type: str | None = None  # "CoSimulation" or "ModelExchange"; None: what the FMU offers
    start_values: dict[str, Any] = field(default_factory=dict)
    input: dict[str, list[Any]] | None = None  # columns, "time" and one per input variable
    output: list[str] | None = None  # variables to record; None: the model's outputs
    debug_logging: bool = False
    # The host's: the input columns' types ({name: "Real" | "Integer" | "Boolean" | FMI 3 type}) and
    # the run's wall-clock limit, which the host enforces (the runner does not read it).
    input_types: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0

    def to_wire(self) -> dict[str, Any]:
        """The JSON object stored on the run (``runs.spec``) and written to ``spec.json``."""
        return {"version": SPEC_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> RunSpec:
        """A spec in the wire form of this version or an earlier one (a run queued before an
        upgrade runs after it); null stands for the default. ValueError if it is neither."""
        data = dict(wire)
        version = data.pop("version", 1)
        if type(version) is not int or not 1 <= version <= SPEC_VERSION:
            raise ValueError(f"run spec version {version!r}: this runner reads versions 1 to {SPEC_VERSION}")
        if version == 1 and "outputs" in data and "output" not in data:
            data["output"] = data.pop("outputs")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"run spec has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**{name: value for name, value in data.items() if value is not None})

    def simulate_fmu_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``fmpy.simulate_fmu``; ``input`` as the NumPy table FMPy expects."""
        arguments = {name: getattr(self, name) for name in SIMULATE_FMU_ARGUMENTS}
        arguments["input"] = input_table(self.input, self.input_types)
        return arguments


@dataclass(frozen=True)
class SweepChunk:
    """Children of one sweep, run one after another in one runner process (``run_chunk``)."""

    children: tuple[tuple[str, RunSpec], ...]  # (run id, its spec)
    # reset() between children: True reuses one instance, False instantiates per child, None checks it.
    reset: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        return {CHUNK_CHILDREN: [{"id": run_id, "spec": spec.to_wire()} for run_id, spec in self.children],
                "reset": self.reset}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> SweepChunk:
        children = tuple((str(child["id"]), RunSpec.from_wire(child["spec"])) for child in wire[CHUNK_CHILDREN])
        if not children:
            raise ValueError("a sweep chunk has no children")
        reset = wire.get("reset")
        return cls(children, reset if isinstance(reset, bool) else None)


def read_job(wire: Mapping[str, Any]) -> RunSpec | SweepChunk:
    """``spec.json``: one run's spec, or a sweep chunk."""
    return SweepChunk.from_wire(wire) if CHUNK_CHILDREN in wire else RunSpec.from_wire(wire)


def open_control_channel() -> IO[str]:
    """Keep the real stdout for control messages; point fd 1 at stderr so model printf cannot forge them."""
    control = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    return control


def send(control: IO[str], event: str, **fields: Any) -> None:
    control.write(json.dumps({"event": event, **fields}) + "\n")
    control.flush()


def unbuffer_native_stdout() -> None:
    """Make the C library's stdout unbuffered so a model's printf survives a crash."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        c_stdout = ctypes.c_void_p.in_dll(libc, "stdout")
        libc.setvbuf(c_stdout, None, 2, 0)  # 2 == _IONBF
    except (OSError, ValueError, AttributeError):
        pass


def memory_status() -> dict[str, int]:
    """VmSize and VmRSS in bytes, so the host can judge memory failures under RLIMIT_AS."""
    fields = {"VmSize": "vm_bytes", "VmRSS": "rss_bytes"}
    status: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in fields:
                    status[fields[key]] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return status


# What the first simulate_fmu would otherwise import lazily (~15 ms): XML parsing, validation, CVode.
_WARM_MODULES = (
    "fmpy.simulation",
    "fmpy.fmi2",
    "fmpy.fmi3",
    "fmpy.model_description",
    "fmpy.validation",
    "fmpy.sundials.cvode",
    "fmpy.sundials.cvode_ls",
    "fmpy.sundials.nvector_serial",
    "fmpy.sundials.sunlinsol_dense",
    "fmpy.sundials.sunmatrix_dense",
    "lxml.etree",
    "numpy",
    "numpy.ctypeslib",
    "zipfile",
)


# Model descriptions of the platform's own (never loaded, never run): parsing and validating one
# of each FMI version before the job halves a forked run's first simulate_fmu (18.7 → 11.7 ms on
# MassSpringSystem; lxml and libxml2 set up their XML and schema machinery lazily).
_WARM_MODEL_DESCRIPTIONS = (
    """<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="2.0" modelName="warm" guid="{00000000-0000-4000-8000-000000000000}"
  variableNamingConvention="structured" numberOfEventIndicators="0">
  <ModelExchange modelIdentifier="warm"/>
  <CoSimulation modelIdentifier="warm" canHandleVariableCommunicationStepSize="true"/>
  <UnitDefinitions><Unit name="m"><BaseUnit m="1"/></Unit></UnitDefinitions>
  <LogCategories><Category name="logAll"/></LogCategories>
  <DefaultExperiment startTime="0" stopTime="1" stepSize="1e-2"/>
  <ModelVariables>
    <ScalarVariable name="x" valueReference="0" causality="output" variability="continuous" initial="exact">
      <Real start="1" unit="m"/></ScalarVariable>
    <ScalarVariable name="der(x)" valueReference="1" causality="local" variability="continuous" initial="calculated">
      <Real derivative="1"/></ScalarVariable>
    <ScalarVariable name="k" valueReference="2" causality="parameter" variability="fixed" initial="exact">
      <Real start="1"/></ScalarVariable>
    <ScalarVariable name="n" valueReference="3" causality="parameter" variability="fixed" initial="exact">
      <Integer start="1"/></ScalarVariable>
    <ScalarVariable name="b" valueReference="4" causality="parameter" variability="fixed" initial="exact">
      <Boolean start="true"/></ScalarVariable>
  </ModelVariables>
  <ModelStructure>
    <Outputs><Unknown index="1"/></Outputs>
    <Derivatives><Unknown index="2" dependencies="1 3"/></Derivatives>
    <InitialUnknowns><Unknown index="2" dependencies="1 3"/></InitialUnknowns>
  </ModelStructure>
</fmiModelDescription>""",
    """<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="3.0" modelName="warm" instantiationToken="{00000000-0000-4000-8000-000000000000}">
  <ModelExchange modelIdentifier="warm"/>
  <CoSimulation modelIdentifier="warm" canHandleVariableCommunicationStepSize="true"/>
  <DefaultExperiment startTime="0" stopTime="1" stepSize="1e-2"/>
  <ModelVariables>
    <Float64 name="time" valueReference="0" causality="independent" variability="continuous"/>
    <Float64 name="x" valueReference="1" causality="output" variability="continuous" initial="exact" start="1"/>
    <Float64 name="der(x)" valueReference="2" causality="local" variability="continuous" derivative="1"/>
    <Float64 name="k" valueReference="3" causality="parameter" variability="fixed" start="1"/>
  </ModelVariables>
  <ModelStructure>
    <Output valueReference="1"/>
    <ContinuousStateDerivative valueReference="2"/>
    <InitialUnknown valueReference="2" dependencies="1 3"/>
  </ModelStructure>
</fmiModelDescription>""",
)


def warm_model_descriptions() -> None:
    """Parse and validate the platform's own model descriptions (see _WARM_MODEL_DESCRIPTIONS)."""
    import io
    import zipfile

    from fmpy.model_description import read_model_description

    for xml in _WARM_MODEL_DESCRIPTIONS:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("modelDescription.xml", xml)
        read_model_description(archive, validate=True)


def warm_up() -> None:
    """Import everything a job needs before the job is known."""
    import importlib

    for name in _WARM_MODULES:
        with contextlib.suppress(ImportError):  # another FMPy version: the job imports what it needs
            importlib.import_module(name)
    import io

    import numpy as np

    sample = np.zeros(2, dtype=[("time", "f8"), ("i", "i4"), ("b", "?"), ("a", "f8", (2,))])
    write_array(sample, io.BytesIO())
    with contextlib.suppress(Exception):  # another FMPy version may read them differently: only slower
        warm_model_descriptions()


_fmu_errors: list[str] = []
# A sweep chunk's child's own FMU messages, kept for its log (the process's stderr holds all children's).
_child_log: list[str] = []
_CHILD_LOG_CHARS = 256 << 10


def log_fmu_message(*args: Any) -> None:
    """FMU logger callback: FMI 1/2 pass (env, instance, status, category, message), FMI 3 drops instance."""
    status, category, message = args[-3], args[-2], args[-1]
    label = _STATUS_LABELS[status] if 0 <= status < len(_STATUS_LABELS) else str(status)
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    cat = category.decode("utf-8", "replace") if isinstance(category, bytes) else str(category or "")
    line = f"[{label}] {cat}: {text}\n" if cat else f"[{label}] {text}\n"
    sys.stderr.write(line)
    sys.stderr.flush()
    if sum(map(len, _child_log)) < _CHILD_LOG_CHARS:
        _child_log.append(line)
    if status >= 3:  # fmi2Error, fmi2Fatal: worth quoting in the error message
        _fmu_errors[:] = [text[:500]]


def input_table(columns: dict[str, list[Any]] | None, types: dict[str, str]) -> Any:
    """Column dict -> NumPy structured array with float64 time first, as FMPy's Input expects."""
    import numpy as np

    if columns is None:
        return None
    if "time" not in columns:
        raise JobFailed("runner_error", "input table has no 'time' column")
    names = ["time", *(name for name in columns if name != "time")]
    dtype = [(name, "f8" if name == "time" else _NUMPY_TYPES.get(types.get(name, "Real"), "f8")) for name in names]
    rows = len(columns["time"])
    table = np.zeros(rows, dtype=dtype)
    for name in names:
        if len(columns[name]) != rows:
            raise JobFailed("runner_error", f"input column {name!r} has {len(columns[name])} rows, time has {rows}")
        table[name] = columns[name]
    return table


def simulate(fmu_dir: Path, spec: RunSpec, **reuse: Any) -> Any:
    """FMPy on the extracted FMU; `reuse` passes a parsed `model_description` and an `fmu_instance`."""
    import fmpy
    from fmpy.fmi1 import FMICallException

    kwargs: dict[str, Any] = {
        "filename": str(fmu_dir),
        **spec.simulate_fmu_arguments(),
        "logger": log_fmu_message,
        "remote_platform": None,  # never fall back to FMPy's remoting server
        **reuse,
    }
    try:
        return fmpy.simulate_fmu(**kwargs)
    except MemoryError:
        raise JobFailed("memory_limit", "model ran out of memory") from None
    except FMICallException as e:
        detail = f": {_fmu_errors[-1]}" if _fmu_errors else ""
        raise JobFailed("model_error", f"{str(e).rstrip('.')}{detail}") from e
    except Exception as e:
        traceback.print_exc()
        raise JobFailed("model_error", f"simulation failed: {e}") from e


def write_array(result: Any, sink: IO[bytes]) -> None:
    """``result`` in .npy format. Not ``numpy.lib.format.write_array``: its ``tofile`` reports a
    write cut short by RLIMIT_FSIZE without the errno that tells it from any other failure."""
    import numpy as np
    from numpy.lib import format as npy

    array = np.ascontiguousarray(result)
    header = npy.header_data_from_array_1_0(array)
    try:
        npy.write_array_header_1_0(sink, header)
    except ValueError:  # a header over 64 KiB (thousands of variables) needs format 2.0
        npy.write_array_header_2_0(sink, header)
    sink.write(array.reshape(-1).view(np.uint8).data)


def write_result(result: Any, path: Path) -> int:
    """The result array to ``path`` (.npy); its number of rows."""
    try:
        with open(path, "wb") as sink:
            write_array(result, sink)
    except OSError as e:
        if e.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
            raise JobFailed("output_too_large", "result exceeds the output size limit") from e
        raise
    return len(result)


def run_job(job_dir: Path, out_dir: Path, control: IO[str]) -> int:
    try:
        job = read_job(json.loads((job_dir / SPEC_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise JobFailed("runner_error", f"cannot read the run spec: {e}") from e
    if isinstance(job, SweepChunk):
        return run_chunk(job_dir / FMU_DIR, out_dir, control, job)
    result = simulate(job_dir / FMU_DIR, job)
    return write_result(result, out_dir / RESULT_FILE)


def run_chunk(fmu_dir: Path, out_dir: Path, control: IO[str], chunk: SweepChunk) -> int:
    """Children of one sweep, one after another in this process: the model description is parsed
    once and, where ``reset()`` is known to be exact, one instance serves them all. ``chunk.reset``:
    True reuses the instance, False instantiates per child, None checks it on the first child (run
    on a fresh instance, then again after reset(); bit-identical results mean reset() is exact)."""
    from fmpy.model_description import read_model_description

    try:
        model_description = read_model_description(str(fmu_dir), validate=chunk.children[0][1].validate)
    except Exception as e:
        raise JobFailed("model_error", f"cannot read the model description: {e}") from e
    reset = chunk.reset
    if model_description.fmiVersion == "1.0":
        reset = False  # FMI 1.0 has no reset
    instance = None
    done = 0
    for run_id, spec in chunk.children:
        send(control, CHILD_STARTED, id=run_id)
        _child_log.clear()
        _fmu_errors.clear()
        started, begun = time.monotonic(), os.times()
        fields: dict[str, Any]
        try:
            if instance is not None and reset:
                instance.reset()
            else:
                free_instance(instance)
                instance = None
                instance = new_instance(fmu_dir, model_description, spec)
            reuse = {"model_description": model_description, "fmu_instance": instance}
            result = simulate(fmu_dir, spec, **reuse)
            if reset is None:
                instance.reset()
                reset = same_result(result, simulate(fmu_dir, spec, **reuse))
                send(control, RESET_CHECKED, ok=reset)
            fields = {"ok": True, "rows": write_result(result, out_dir / f"{run_id}{RESULT_SUFFIX}")}
            done += 1
        except JobFailed as e:
            fields = {"ok": False, "error_code": e.error_code, "message": e.message}
            free_instance(instance)  # never reuse an instance that failed
            instance = None
        except MemoryError:
            fields = {"ok": False, "error_code": "memory_limit", "message": "model ran out of memory"}
            free_instance(instance)
            instance = None
        ended = os.times()
        cpu = max(ended.user + ended.system - begun.user - begun.system, 0.0)
        (out_dir / f"{run_id}.log").write_text("".join(_child_log)[-_CHILD_LOG_CHARS:], encoding="utf-8")
        send(control, CHILD_DONE, id=run_id, cpu_time_s=cpu, wall_time_s=time.monotonic() - started, **fields)
    free_instance(instance)
    return done


def new_instance(fmu_dir: Path, model_description: Any, spec: RunSpec) -> Any:
    from fmpy import instantiate_fmu

    fmi_type = spec.fmi_type or ("CoSimulation" if model_description.coSimulation else "ModelExchange")
    try:
        return instantiate_fmu(str(fmu_dir), model_description, fmi_type,
                               debug_logging=spec.debug_logging, logger=log_fmu_message)
    except Exception as e:
        raise JobFailed("model_error", f"cannot instantiate the model: {e}") from e


def free_instance(instance: Any) -> None:
    if instance is not None:
        with contextlib.suppress(Exception):
            instance.freeInstance()


def same_result(a: Any, b: Any) -> bool:
    return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())


_SUPERVISE_POLL_S = 0.01


def undumpable() -> None:
    """``PR_SET_DUMPABLE`` 0: processes of the same user, without ``CAP_SYS_PTRACE``, can no longer
    ptrace this one or open its ``/proc/<pid>/mem``; the children it forks stay dumpable."""
    import ctypes

    pr_set_dumpable = 4
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def vm_peak(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def host_gone(stdin: select.poll) -> bool:
    """The host's end of stdin closed with nothing left to read ("go" still unread is not gone)."""
    return any(ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN for _, ev in stdin.poll(0))


def supervise(runner: int, control: IO[str]) -> None:
    """Reap the runner and pass on how it ended: bwrap's init would swallow its peak RSS and CPU time."""
    peak_vm = 0
    host = select.poll()
    host.register(sys.stdin.fileno(), select.POLLIN)
    while True:
        pid, status, usage = os.wait4(runner, os.WNOHANG)
        if pid:
            break
        # Under RLIMIT_AS alone a failed allocation looks like any crash; the peak tells them apart.
        peak_vm = max(peak_vm, vm_peak(runner))
        if host_gone(host):
            # Whoever enforces the deadline died (a killed worker): end the job rather than run unwatched.
            with contextlib.suppress(ProcessLookupError):
                os.kill(runner, signal.SIGKILL)
        time.sleep(_SUPERVISE_POLL_S)
    cpu = usage.ru_utime + usage.ru_stime
    send(control, EXIT, status=status, max_rss_bytes=usage.ru_maxrss * 1024, cpu_time_s=cpu, peak_vm_bytes=peak_vm)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)  # die of the same signal, so the host's wait status tells the truth
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--sandbox-id", default="")  # makes the process tree findable in ps and tests
    args = parser.parse_args(argv)

    control = open_control_channel()
    # Fork before anything is imported or any thread exists: cheap, and safe.
    runner = os.fork()
    if runner != 0:
        # The model runs as the same user in the child: it must not trace or write the process
        # that reports its exit and resource use, nor keep it from ending the job.
        undumpable()
        supervise(runner, control)
    serve(args.job_dir, args.out_dir, control)


def serve(job_dir: Path, out_dir: Path, control: IO[str], *, warm: bool = True) -> None:
    """The runner proper: warm up (``warm=False``: forked from a process that did), wait for the
    job, run it, report, exit."""
    faulthandler.enable(file=sys.stderr)  # Python stack in the log when the model crashes
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead of killing us
    unbuffer_native_stdout()
    if warm:
        warm_up()
    # CPU spent warming up, sent before any model code runs: the host subtracts it from the job's.
    times = os.times()
    send(control, READY, pid=os.getpid(), cpu_time_s=times.user + times.system, warm=warm, **memory_status())

    if sys.stdin.buffer.readline() != GO:
        os._exit(0)  # closed before a job arrived
    send(control, RUNNING)
    try:
        rows = run_job(job_dir, out_dir, control)
        send(control, DONE, ok=True, rows=rows)
    except JobFailed as e:
        send(control, DONE, ok=False, error_code=e.error_code, message=e.message)
    except MemoryError:
        send(control, DONE, ok=False, error_code="memory_limit", message="runner ran out of memory")
    except Exception as e:
        traceback.print_exc()
        send(control, DONE, ok=False, error_code="runner_error", message=f"{type(e).__name__}: {e}")
    sys.stderr.flush()
    # Skip interpreter teardown: unloading a model's library can hang or crash.
    os._exit(0)


if __name__ == "__main__":
    main()
