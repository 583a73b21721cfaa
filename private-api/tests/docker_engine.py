"""The Docker engine for tests: skip with the reason when none answers, build the runner image when stale.

Where ``FMU_GATEWAY_TEST_REQUIRE`` names docker (.ci/run does), a missing engine is a failure, so
CI cannot pass with the Docker half of the suite skipped (``required.py``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from required import unavailable

from app.config import REPO_ROOT
from app.sandbox import SandboxError
from app.sandbox.docker import LABEL_RUNNER_DIGEST, connect, image_labels, runner_digest

RUNNER_IMAGE = os.environ.get("FMU_GATEWAY_DOCKER_IMAGE", "fmu-gateway-runner:latest")
BUILD_SCRIPT = REPO_ROOT / "deploy" / "images" / "build.sh"
LABEL_SOURCE_DIGEST = "org.fmu-gateway.source-digest"


def source_digest() -> str:
    """What deploy/images/source_digest.py prints for the working tree (loaded by path: not a package)."""
    spec = importlib.util.spec_from_file_location("source_digest", REPO_ROOT / "deploy" / "images" / "source_digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    digest: str = module.source_digest()
    return digest


def require_docker() -> None:
    """Skip (or fail under CI) unless an engine answers and the runner image matches runner.py."""
    reason = docker_available()
    if reason is not None:
        unavailable("docker", f"no usable Docker engine: {reason}")
    error = ensure_image("runner")
    if error is not None:
        pytest.fail(error)


@functools.cache
def ensure_image(name: str) -> str | None:
    """Build fmu-gateway-<name>:latest once per session when missing or stale; the error or None."""
    if name == "runner" and image_label(RUNNER_IMAGE, LABEL_RUNNER_DIGEST) == runner_digest():
        return None
    if name != "runner" and image_label(f"fmu-gateway-{name}:latest", LABEL_SOURCE_DIGEST) == source_digest():
        return None
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(BUILD_SCRIPT), name], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return f"cannot build the {name} image: {done.stderr[-3000:]}"
    return None


def image_label(image: str, label: str) -> str | None:
    """The label's value; None when the image (or the engine) is missing."""
    try:
        client = connect()
    except SandboxError:
        return None
    try:
        return image_labels(client, image).get(label)
    except Exception:
        return None
    finally:
        client.close()


def docker_available() -> str | None:
    """None when an engine answers, else why not."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return "no Docker engine socket (/var/run/docker.sock) and DOCKER_HOST is unset"
    try:
        connect().close()
    except SandboxError as e:
        return str(e)
    return None


def sandbox_containers(**labels: str) -> list[dict[str, object]]:
    """Containers (running or not) carrying all of these labels."""
    client = connect()
    try:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        found: list[dict[str, object]] = client.api.containers(all=True, filters=filters)
        return found
    finally:
        client.close()
