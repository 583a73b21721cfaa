"""Choosing a sandbox backend by name, and the backend of a process that executes no runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.sandbox.base import Limits, Sandbox, SandboxBackend, SandboxError
from app.sandbox.bwrap import BubblewrapBackend
from app.sandbox.process import ProcessBackend

logger = logging.getLogger(__name__)


class NoSandboxes(SandboxBackend):
    """For a process that only enqueues runs: it needs no engine, socket or bwrap to start."""

    name = "none"

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def start(self, limits: Limits) -> Sandbox:
        raise SandboxError("this process does not execute runs (workers do)")

    def remove_leftovers(self) -> list[str]:
        return []


@dataclass(frozen=True)
class DockerSettings:
    image: str = "fmu-gateway-runner:latest"
    runtime: str | None = None  # e.g. "runsc" (gVisor); None: the engine's default
    cpus: float | None = 1.0  # CPU quota of one sandbox; None: unlimited
    base_url: str | None = None  # None: DOCKER_HOST or the local socket


def create_backend(
    name: str, *, work_dir: Path, production: bool = False, docker: DockerSettings | None = None
) -> SandboxBackend:
    """The backend called `name` ("bwrap" | "docker" | "process"), keeping per-sandbox dirs under work_dir."""
    if name == BubblewrapBackend.name:
        return BubblewrapBackend(work_dir=work_dir)
    if name == "docker":
        from app.sandbox.docker import DockerBackend  # the Docker SDK, only where it is chosen

        docker = docker or DockerSettings()
        return DockerBackend(
            work_dir=work_dir, image=docker.image, runtime=docker.runtime, cpus=docker.cpus, base_url=docker.base_url
        )
    if name == ProcessBackend.name:
        if production:
            raise ValueError("the 'process' sandbox isolates only memory and time; not allowed in production")
        logger.warning(
            "sandbox backend 'process' isolates only memory and time: "
            "models can read files, use the network and see other processes"
        )
        return ProcessBackend(work_dir=work_dir)
    raise ValueError(f"unknown sandbox backend {name!r} (expected 'bwrap', 'docker' or 'process')")
