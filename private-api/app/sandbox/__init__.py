"""Per-run sandboxes: every FMU run executes in a fresh, killable, isolated process tree.

base.py       Limits, Job, Outcome, Sandbox, SandboxBackend, create_backend (the contract)
bwrap.py      BubblewrapBackend: namespaces, read-only binds, no network (the default)
process.py    ProcessBackend: plain child process, memory/time limits only (explicit opt-in)
child.py      ChildProcessSandbox: lifecycle shared by backends that spawn a command
resources.py  ResourceControl: cgroup v1 / v2 per sandbox, rlimits as the fallback
outcome.py    observations (deadline, OOM counter, signal, runner report) -> status + error code
capture.py    bounded log and control-message readers
staging.py    host-side sandbox dirs, placing the FMU and spec, checking the output
runner.py     the standalone script that runs inside (stdlib + FMPy + NumPy + pyarrow only)
"""

from app.sandbox.base import Job, Limits, Outcome, Sandbox, SandboxBackend, SandboxError, create_backend

__all__ = ["Job", "Limits", "Outcome", "Sandbox", "SandboxBackend", "SandboxError", "create_backend"]
