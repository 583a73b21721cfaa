"""The built images, run as a deployment runs them: the API image serving with the Docker sandbox
(its runs in sibling containers through the engine's socket), and the SDK image's CLI against it.

Real engine, real containers, real HTTP; skipped with the reason where no engine runs.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fmpy
import httpx
import numpy as np
import pytest
from databases import temporary_database
from docker_engine import ensure_image, require_docker, sandbox_containers
from fmu_gateway_sdk import FMUGatewayClient
from redis_keys import REDIS_URL, temporary_redis_prefix
from s3_server import S3Server

from app.sandbox.docker import LABEL_WORK_DIR, connect

API_IMAGE = "fmu-gateway-api:latest"
SDK_IMAGE = "fmu-gateway-sdk:latest"
API_UID = 10001  # the image's non-root user
DOCKER_SOCKET = "/var/run/docker.sock"
TEST_LABEL = "org.fmu-gateway.test"

pytestmark = pytest.mark.timeout(900)


@dataclass
class ApiContainer:
    base_url: str
    api_key: str
    var_dir: Path
    container_id: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need_image(name: str) -> None:
    require_docker()
    error = ensure_image(name)
    if error is not None:
        pytest.fail(error)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiContainer]:
    need_image("api")
    client = connect()
    # Sandbox dirs are bound into run containers by host path: the same path inside and out.
    var_dir = tmp_path_factory.mktemp("api-image")
    os.chown(var_dir, API_UID, API_UID)
    port = free_port()
    env = {
        "FMU_GATEWAY_VAR_DIR": str(var_dir),
        "FMU_GATEWAY_SECRET_KEY": "image-test-" + uuid.uuid4().hex,
        "FMU_GATEWAY_DOCKER_IMAGE": "fmu-gateway-runner:latest",
        "FMU_GATEWAY_WORKERS": "2",
        "FMU_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    volumes = {str(var_dir): {"bind": str(var_dir), "mode": "rw"}, DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}}
    common = {"environment": env, "volumes": volumes, "network_mode": "host",
              "group_add": [str(os.stat(DOCKER_SOCKET).st_gid)], "labels": {TEST_LABEL: "api-image"}}
    container = client.containers.run(API_IMAGE, detach=True, **common)  # default command: serve
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, container)
        key_file = var_dir / "dev-api-key"
        client.containers.run(API_IMAGE, ["ensure-dev-user", "--key-file", str(key_file)], remove=True, **common)
        yield ApiContainer(base_url, key_file.read_text().strip(), var_dir, container.id)
        container.stop(timeout=30)  # SIGTERM: the server closes its warm sandboxes on the way out
        assert container.wait(timeout=60)["StatusCode"] == 0, container.logs()[-3000:].decode()
        assert sandbox_containers(**{LABEL_WORK_DIR: str(var_dir / "sandboxes")}) == [], "sandbox containers left"
    finally:
        container.remove(force=True)
        client.close()


def wait_healthy(base_url: str, container: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        container.reload()  # type: ignore[attr-defined]
        if container.status == "exited":  # type: ignore[attr-defined]
            break
        time.sleep(0.5)
    logs = container.logs()[-5000:].decode()  # type: ignore[attr-defined]
    pytest.fail(f"the API container did not become healthy:\n{logs}")


def test_api_image_serves_healthz_with_the_docker_sandbox(api: ApiContainer) -> None:
    health = httpx.get(f"{api.base_url}/healthz", timeout=10).json()
    assert (health["status"], health["sandbox"]) == ("ok", "docker")
    inspected = connect().api.inspect_container(api.container_id)
    assert inspected["Config"]["User"] == "fmu"  # not root
    assert inspected["State"]["Health"]["Status"] in ("starting", "healthy")  # the image's HEALTHCHECK runs


def test_api_image_runs_an_fmu_end_to_end(api: ApiContainer, fmus: dict[str, Path]) -> None:
    with FMUGatewayClient(api.api_key, api.base_url) as client:
        result = client.simulate(fmus["VanDerPol"], start_values={"mu": 2.5}, stop_time=5.0, output_interval=0.05)
        run = result.run
    expected = fmpy.simulate_fmu(str(fmus["VanDerPol"]), start_values={"mu": 2.5}, stop_time=5.0, output_interval=0.05)
    got = result.to_numpy()
    assert got.dtype.names == expected.dtype.names
    for name in expected.dtype.names or ():
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, err_msg=name)
    assert run.status == "succeeded"
    assert run.credits_charged >= 1


def test_api_image_survives_a_crashing_fmu(api: ApiContainer, fmus: dict[str, Path]) -> None:
    with FMUGatewayClient(api.api_key, api.base_url) as client:
        fmu = client.fmus.upload(fmus["Hostile"])
        run = client.runs.create(fmu.id, start_values={"mode": 1}, fmi_type="CoSimulation", wait=60)
    assert run.status == "failed" and run.error is not None and run.error.code == "model_crashed", run
    assert httpx.get(f"{api.base_url}/healthz", timeout=10).status_code == 200


def test_sdk_image_cli_talks_to_the_api_image(api: ApiContainer, fmus: dict[str, Path]) -> None:
    need_image("sdk")
    with FMUGatewayClient(api.api_key, api.base_url) as client:
        fmu = client.fmus.upload(fmus["Feedthrough"])
    client = connect()
    try:
        env = {"FMU_GATEWAY_URL": api.base_url, "FMU_GATEWAY_API_KEY": api.api_key, "COLUMNS": "200"}
        output = client.containers.run(SDK_IMAGE, ["info", fmu.id], environment=env, network_mode="host",
                                       remove=True, labels={TEST_LABEL: "sdk-image"})
    finally:
        client.close()
    text = output.decode()
    assert fmu.id in text and "real_in" in text, text


def test_api_and_worker_images_run_an_fmu_as_deployed(
    fmus: dict[str, Path], s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The Compose stack's shape on this host's services: a migrate job, an API that only enqueues
    (no Docker socket), a worker with the docker sandbox, PostgreSQL, Redis and S3 (moto)."""
    need_image("api")
    client = connect()
    api_dir, worker_dir = tmp_path_factory.mktemp("stack-api"), tmp_path_factory.mktemp("stack-worker")
    for directory in (api_dir, worker_dir):
        os.chown(directory, API_UID, API_UID)
    bucket = s3_server.create_bucket()
    port = free_port()
    started: list[Any] = []
    with temporary_database("postgresql", tmp_path_factory.mktemp("stack-db")) as database_url, \
            temporary_redis_prefix("stack") as prefix:
        shared = {
            **s3_server.gateway_env(bucket),
            "FMU_GATEWAY_DATABASE_URL": database_url,
            "FMU_GATEWAY_BROKER_URL": REDIS_URL,
            "FMU_GATEWAY_REDIS_URL": REDIS_URL,
            "FMU_GATEWAY_REDIS_KEY_PREFIX": prefix,
            "FMU_GATEWAY_SECRET_KEY": "stack-test-" + uuid.uuid4().hex,
            "FMU_GATEWAY_DOCKER_IMAGE": "fmu-gateway-runner:latest",
            "FMU_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
        }
        labels = {TEST_LABEL: "stack"}
        try:
            client.containers.run(API_IMAGE, ["migrate"], environment=shared, network_mode="host", remove=True,
                                  labels=labels)
            api_env = {**shared, "FMU_GATEWAY_VAR_DIR": str(api_dir), "HOST": "127.0.0.1", "PORT": str(port)}
            api = client.containers.run(API_IMAGE, ["serve"], detach=True, environment=api_env, network_mode="host",
                                        volumes={str(api_dir): {"bind": str(api_dir), "mode": "rw"}}, labels=labels)
            started.append(api)
            worker = client.containers.run(
                API_IMAGE, ["worker"], detach=True, network_mode="host", labels=labels,
                environment={**shared, "FMU_GATEWAY_VAR_DIR": str(worker_dir), "FMU_GATEWAY_WORKERS": "2"},
                volumes={str(worker_dir): {"bind": str(worker_dir), "mode": "rw"},
                         DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}},
                group_add=[str(os.stat(DOCKER_SOCKET).st_gid)],
            )
            started.append(worker)
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(base_url, api)
            created = client.containers.run(API_IMAGE, ["create-user", "--email", "stack@example.com",
                                                        "--credits", "100"],
                                            environment=shared, network_mode="host", remove=True, labels=labels)
            api_key = created.decode().strip().splitlines()[-1]

            with FMUGatewayClient(api_key, base_url) as sdk:
                fmu = sdk.fmus.upload(fmus["VanDerPol"])
                run = sdk.runs.create(fmu.id, stop_time=3.0, output_interval=0.05, wait=120)
                worker.reload()
                assert run.status == "succeeded", (run, worker.status, worker.logs()[-3000:].decode())
                result = sdk.runs.result(run.id)
            expected = fmpy.simulate_fmu(str(fmus["VanDerPol"]), stop_time=3.0, output_interval=0.05)
            got = result.to_numpy()
            for name in expected.dtype.names or ():
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, err_msg=name)
            keys = s3_server.keys(bucket)
            assert any(k.startswith("fmus/") for k in keys) and f"runs/{result.run.id}/result.arrow" in keys, keys
            worker.stop(timeout=30)
            assert worker.wait(timeout=60)["StatusCode"] == 0, worker.logs()[-3000:].decode()
            assert sandbox_containers(**{LABEL_WORK_DIR: str(worker_dir / "sandboxes")}) == []
        finally:
            for container in started:
                container.remove(force=True)
            client.close()
