"""Per-run sandboxes: every FMU run executes in a fresh, killable, isolated process tree.

base.py       Limits, Job, Outcome, Sandbox, SandboxBackend (the contract; imports no backend)
backends.py   create_backend: a backend by name; NoSandboxes for processes that only enqueue
bwrap.py      BubblewrapBackend: namespaces, read-only binds, no network (the default); BwrapZygote
process.py    ProcessBackend: plain child process, memory/time limits only (explicit opt-in)
docker.py     DockerBackend: a container per sandbox; docker_warm.py: its zygote container
warm.py       Zygote: a warm sandbox per tenant that forks each run (ZygoteBackend: their pool)
child.py      ChildProcessSandbox: lifecycle shared by backends that spawn a command
resources.py  ResourceControl: cgroup v1 / v2 per sandbox, rlimits as the fallback
outcome.py    observations (deadline, OOM counter, signal, runner report) -> status + error code
capture.py    bounded log and control-message readers
staging.py    host-side sandbox dirs, placing the FMU and spec, checking the output
result_file.py the runner's result array (.npy, untrusted) into the stored Arrow file
runner.py     the standalone script that runs inside (stdlib + FMPy + NumPy only)
"""

from app.sandbox.backends import create_backend
from app.sandbox.base import Job, Limits, Outcome, Sandbox, SandboxBackend, SandboxError

__all__ = ["Job", "Limits", "Outcome", "Sandbox", "SandboxBackend", "SandboxError", "create_backend"]
