"""Start and stop a real gateway process (``fmu-gateway-admin serve``) on a free port.

Used by the end-to-end tests and by ``bench/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]
ADMIN = Path(sys.executable).parent / "fmu-gateway-admin"
SECRET_KEY = "test-secret-" + uuid.uuid4().hex
# Tests forge access tokens with it: good ones and wrong ones.
JWT_SECRET = "test-jwt-secret-" + uuid.uuid4().hex


# The user commands tests run hundreds of times go through the CLI's own code in this process
# (Typer's runner, the gateway's environment): the same parsing, transaction and output, without a
# Python start-up and the app's imports (~1.5 s each). test_admin runs the installed executable.
IN_PROCESS_COMMANDS = frozenset({"create-user", "set-tier", "create-key"})
_admin_lock = threading.Lock()


def admin_in_process(env: dict[str, str], args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    from typer.testing import CliRunner

    from app import admin
    from app.config import get_settings

    with _admin_lock:
        get_settings.cache_clear()  # the settings of this gateway's environment, read again
        try:
            result = CliRunner().invoke(admin.cli, list(args), env=env)
        finally:
            get_settings.cache_clear()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess([str(ADMIN), *args], result.exit_code, result.stdout, stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    base_url: str
    var_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        if args and args[0] in IN_PROCESS_COMMANDS:
            return admin_in_process(self.env, args)
        return self.admin_executable(*args)

    def admin_executable(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``fmu-gateway-admin`` itself, as an operator runs it."""
        return subprocess.run([str(ADMIN), *args], env=self.env, capture_output=True, text=True, timeout=60)

    def create_user(self, credits: int = 1000, *, tier: str | None = None, email: str | None = None) -> str:
        """A new user's API key; on the free tier unless ``tier`` says otherwise."""
        email = email or f"{uuid.uuid4().hex[:10]}@example.com"
        result = self.admin("create-user", "--email", email, "--credits", str(credits))
        assert result.returncode == 0, result.stderr
        if tier is not None:
            self.set_tier(email, tier)
        return result.stdout.strip().splitlines()[-1]

    def set_tier(self, email: str, tier: str) -> None:
        result = self.admin("set-tier", "--email", email, "--tier", tier)
        assert result.returncode == 0, result.stderr

    def client(self, api_key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=60)
        self.clients.append(client)
        return client

    def alive(self) -> bool:
        return self.process.poll() is None


def new_var_dir(name: str) -> Path:
    """A fresh var dir inside the repository (not /tmp: sandbox isolation is tested against it)."""
    var_dir = REPO_ROOT / "var" / f"test-{name}-{uuid.uuid4().hex[:8]}"
    var_dir.mkdir(parents=True)
    return var_dir


@contextmanager
def running_gateway(name: str, **overrides: str) -> Iterator[Gateway]:
    """A gateway on a var dir of its own, stopped and removed afterwards."""
    var_dir = new_var_dir(name)
    try:
        gateway = start_gateway(var_dir, **overrides)
        try:
            yield gateway
        finally:
            stop_gateway(gateway)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def process_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a gateway or worker process: one secret and one JWT key for all of them."""
    return {
        **os.environ,
        "FMU_GATEWAY_VAR_DIR": str(var_dir),
        "FMU_GATEWAY_SECRET_KEY": SECRET_KEY,
        "FMU_GATEWAY_JWT_SECRET": JWT_SECRET,
        "FMU_GATEWAY_ENVIRONMENT": "test",
        "FMU_GATEWAY_WORKERS": "2",
        **overrides,
    }


def start_gateway(var_dir: Path, *, port: int | None = None, **overrides: str) -> Gateway:
    """``port`` pins the address, e.g. to restart a gateway where clients expect it."""
    port = port or free_port()
    env = process_env(var_dir, **{"FMU_GATEWAY_MAX_UPLOAD_BYTES": str(8 << 20), **overrides})
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(ADMIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    gateway = Gateway(f"http://127.0.0.1:{port}", var_dir, env, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited:\n" + log_path.read_text())
        try:
            if httpx.get(f"{gateway.base_url}/healthz", timeout=1).status_code == 200:
                return gateway
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_gateway(gateway)
    raise RuntimeError("gateway did not become healthy:\n" + log_path.read_text())


@dataclass
class WorkerProcess:
    """A ``fmu-gateway-admin worker`` process: executes runs from the broker."""

    var_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(var_dir: Path, **overrides: str) -> WorkerProcess:
    """A worker on a var dir of its own (sandboxes, FMU cache); the database, storage and broker
    come from ``overrides`` (the same as its gateway's). Returns once it consumes the queue."""
    env = process_env(var_dir, **overrides)
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([str(ADMIN), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    worker = WorkerProcess(var_dir, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("worker exited:\n" + worker.log())
        if "consuming with" in worker.log():
            return worker
        time.sleep(0.1)
    stop_worker(worker)
    raise RuntimeError("worker did not start:\n" + worker.log())


def stop_worker(worker: WorkerProcess) -> None:
    if worker.alive():
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait()


def stop_gateway(gateway: Gateway) -> None:
    for client in gateway.clients:
        client.close()
    if gateway.alive():
        gateway.process.send_signal(signal.SIGTERM)
        try:
            gateway.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.process.pid, signal.SIGKILL)
            gateway.process.wait()
