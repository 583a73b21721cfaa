"""The `process` backend: the runner as a plain child process with a clean environment.

It confines memory, processes and time (cgroup or rlimits) and nothing else: the model
can read whatever the server's user can read and use the network. For machines without
bwrap or Docker, chosen explicitly, never in production.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.sandbox.base import Limits, SandboxBackend
from app.sandbox.child import RUNNER_PATH, ChildProcessSandbox, Launch, new_sandbox_id, runner_env, spawn_child
from app.sandbox.cleanup import remove_stale_sandboxes
from app.sandbox.resources import create_resource_control
from app.sandbox.staging import SandboxDirs


class ProcessBackend(SandboxBackend):
    name = "process"

    def __init__(self, *, work_dir: Path, python: Path | None = None, use_cgroups: bool = True) -> None:
        self.work_dir = work_dir
        self.python = Path(os.path.abspath(python or sys.executable))
        self.use_cgroups = use_cgroups

    def remove_leftovers(self) -> list[str]:
        return remove_stale_sandboxes(self.work_dir)

    def start(self, limits: Limits) -> ChildProcessSandbox:
        sandbox_id = new_sandbox_id()
        dirs = SandboxDirs.create(self.work_dir, sandbox_id)
        launch = Launch(
            argv=[
                str(self.python),
                "-I",  # ignore PYTHON* variables, user site and the working directory
                "-B",
                str(RUNNER_PATH),
                "--job-dir",
                str(dirs.job),
                "--out-dir",
                str(dirs.out),
                "--sandbox-id",
                sandbox_id,
            ],
            env=runner_env(str(dirs.tmp), sandbox_id),
            cwd=dirs.tmp,
        )
        resources = create_resource_control(limits, sandbox_id, use_cgroups=self.use_cgroups)
        return ChildProcessSandbox(
            sandbox_id=sandbox_id, limits=limits, dirs=dirs, resources=resources,
            spawn=spawn_child(launch, resources), signal_via_exit_code=launch.signal_via_exit_code,
        )
