"""The `docker` backend: one fresh, hardened container per sandbox, from the runner image.

Each container runs the same runner as the other backends (FMPy imported, waiting for "go"
on stdin) with no network, a read-only root, a size-capped private /tmp, no capabilities,
no-new-privileges, a pids, memory (swap included) and CPU limit, uid 65534, the job
directory read-only at /job and the output directory at /out. An optional runtime (e.g.
gVisor's `runsc`) comes from settings. Containers carry labels naming their sandbox and the
work directory of the process that made them: they are always removed, and a process
starting on a work directory removes what a crashed predecessor left there.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.sandbox.base import Limits, SandboxBackend, SandboxError
from app.sandbox.capture import BoundedLog, ControlMessages
from app.sandbox.child import ChildProcessSandbox, Exit, new_sandbox_id, runner_digest, runner_env
from app.sandbox.cleanup import remove_stale_sandboxes
from app.sandbox.docker_warm import DockerZygote
from app.sandbox.resources import ContainerResources
from app.sandbox.runner import GO
from app.sandbox.staging import SandboxDirs, stage_job

if TYPE_CHECKING:
    import docker

    from app.sandbox.warm import Zygote

logger = logging.getLogger(__name__)

LABEL_SANDBOX = "org.fmu-gateway.sandbox"
LABEL_WORK_DIR = "org.fmu-gateway.work-dir"
LABEL_RUNNER_DIGEST = "org.fmu-gateway.runner-digest"
RUNNER_PYTHON = "/opt/venv/bin/python"  # where runner.Dockerfile puts the venv
CONTAINER_RUNNER = "/runner/runner.py"
CONTAINER_JOB = "/job"
CONTAINER_OUT = "/out"
SANDBOX_USER = "65534:65534"  # nobody, as in the bwrap backend

_API_TIMEOUT_S = 30.0
# A stopped sandbox container this old is nobody's: its owner would have removed it at once.
ABANDONED_AFTER = timedelta(minutes=10)
_EXIT_TIMEOUT_S = 10.0
_READ_CHUNK = 64 << 10
_POLL_S = 0.1
_FRAME_HEADER = 8  # Docker's multiplexed stream: stream id, 3 zero bytes, big-endian length
_STDOUT, _STDERR = 1, 2


def image_labels(client: docker.DockerClient, image: str) -> dict[str, str]:
    """The image's labels; raises docker.errors.ImageNotFound."""
    attrs = client.api.inspect_image(image)
    labels: dict[str, str] = (attrs.get("Config") or {}).get("Labels") or {}
    return labels


def connect(base_url: str | None = None) -> docker.DockerClient:
    """A client for the engine at base_url, else DOCKER_HOST, else the local socket."""
    import docker

    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=_API_TIMEOUT_S)
        else:
            client = docker.from_env(timeout=_API_TIMEOUT_S)
        client.ping()
    except Exception as e:
        raise SandboxError(f"cannot reach the Docker engine: {e}") from e
    return client


class DockerBackend(SandboxBackend):
    name = "docker"
    python_in_image = RUNNER_PYTHON

    def __init__(
        self,
        *,
        work_dir: Path,
        image: str,
        runtime: str | None = None,
        cpus: float | None = None,
        base_url: str | None = None,
    ) -> None:
        import docker.errors

        self.work_dir = work_dir.resolve()
        self.image = image
        self.runtime = runtime or None
        self.cpus = cpus
        self.client = connect(base_url)
        try:
            labels = image_labels(self.client, image)
        except docker.errors.ImageNotFound as e:
            raise SandboxError(f"runner image {image!r} is not in the engine; build it with `make build`") from e
        # Host and sandbox speak one line protocol: an image of another runner.py or zygote.py would fail obscurely.
        if labels.get(LABEL_RUNNER_DIGEST) != runner_digest():
            raise SandboxError(
                f"runner image {image!r} was built from another runner.py or zygote.py than this server's; "
                "rebuild it with `make build`"
            )
        # A zygote builds namespaces with the host kernel's calls: another runtime (gVisor's) keeps a
        # container per run, the isolation it is chosen for, and so does an engine that confines
        # containers with AppArmor or SELinux, whose default policies forbid the mounts.
        confined = any(("apparmor" in option or "selinux" in option)
                       for option in self.client.info().get("SecurityOptions") or [])
        self.has_zygotes = self.runtime is None and not confined
        if self.runtime is not None:
            runtimes = self.client.info().get("Runtimes") or {}
            if self.runtime not in runtimes:
                raise SandboxError(f"the Docker engine has no runtime {self.runtime!r} (it has {sorted(runtimes)})")

    def start_zygote(self, limits: Limits, *, prefork: bool = False) -> Zygote:
        if not self.has_zygotes:
            return super().start_zygote(limits, prefork=prefork)  # raises: none here
        return DockerZygote(self, limits, prefork=prefork)

    def start(self, limits: Limits) -> ChildProcessSandbox:
        sandbox_id = new_sandbox_id()
        dirs = SandboxDirs.create(self.work_dir, sandbox_id)
        # The container's uid 65534 writes the result; the 0700 sandbox root keeps other host users out.
        dirs.out.chmod(0o777)
        resources = ContainerResources(limits)
        config = self.container_config(sandbox_id, dirs, limits)

        def spawn(control: ControlMessages, log: BoundedLog) -> ContainerTree:
            return ContainerTree(self.client, config, resources, control, log)

        return ChildProcessSandbox(
            sandbox_id=sandbox_id,
            limits=limits,
            dirs=dirs,
            resources=resources,
            spawn=spawn,
            signal_via_exit_code=True,  # docker-init ends with 128 + N when the runner died of signal N
        )

    def container_config(self, sandbox_id: str, dirs: SandboxDirs, limits: Limits) -> dict[str, Any]:
        """The body of the engine's create-container request."""
        from docker.types import Mount

        host_config = self.hardened_host_config(
            limits, memory_bytes=limits.memory_bytes, max_processes=limits.max_processes,
            # tmpfs pages count against the container's memory limit; the size caps /tmp on its own too.
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.memory_bytes},mode=1777"},
            mounts=[
                Mount(CONTAINER_JOB, str(dirs.job), type="bind", read_only=True),
                Mount(CONTAINER_OUT, str(dirs.out), type="bind"),
            ],
            ulimits=container_ulimits(limits),
            init=True,  # docker-init reaps orphans and turns the runner's death by signal into 128 + N
        )
        config = self.hardened_container_config(
            sandbox_id, host_config,
            command=[RUNNER_PYTHON, "-I", "-B", CONTAINER_RUNNER, "--job-dir", CONTAINER_JOB,
                     "--out-dir", CONTAINER_OUT, "--sandbox-id", sandbox_id],
            environment=runner_env("/tmp", sandbox_id), stdin_open=True,
        )
        # The engine closes the runner's stdin when our attach connection goes (this process died): the
        # runner's supervisor then ends the job instead of running it past a deadline nobody keeps.
        config["StdinOnce"] = True
        return config

    def hardened_host_config(
        self, limits: Limits, *, memory_bytes: int, max_processes: int, tmpfs: dict[str, str], mounts: list[Any],
        ulimits: list[Any] | None = None, security_opt: tuple[str, ...] = (), cpu_limit: bool = True,
        init: bool = False, auto_remove: bool = False,
    ) -> dict[str, Any]:
        """What every sandbox container gets (cold, or a warm one's zygote), with its own mounts."""
        from docker.types import LogConfig, Ulimit

        host_config: dict[str, Any] = self.client.api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs=tmpfs,
            mounts=mounts,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges", *security_opt],
            pids_limit=max_processes,
            mem_limit=memory_bytes,
            memswap_limit=memory_bytes,  # equal: no swap beyond the memory limit
            nano_cpus=int(self.cpus * 1e9) if self.cpus and cpu_limit else None,
            ulimits=ulimits if ulimits is not None else [Ulimit(name="core", soft=0, hard=0)],
            init=init,
            # We read the output from the attach stream; a logging driver would also copy all of it to the
            # engine's disk, where a model printing without end could fill it before its deadline.
            log_config=LogConfig(type=LogConfig.types.NONE),
            oom_score_adj=1000,  # under host memory pressure, a sandbox goes before anything else
            ipc_mode="private",
            runtime=self.runtime,
            auto_remove=auto_remove,
        )
        return host_config

    def hardened_container_config(self, sandbox_id: str, host_config: dict[str, Any], *, command: list[str],
                                  environment: dict[str, str], stdin_open: bool) -> dict[str, Any]:
        config: dict[str, Any] = self.client.api.create_container_config(
            image=self.image,
            command=command,
            user=SANDBOX_USER,
            stdin_open=stdin_open,
            environment=environment,
            working_dir="/tmp",
            hostname="sandbox",
            network_disabled=True,
            labels={LABEL_SANDBOX: sandbox_id, LABEL_WORK_DIR: str(self.work_dir)},
            host_config=host_config,
        )
        return config

    def remove_leftovers(self) -> list[str]:
        """Containers of this work directory (a crashed predecessor's), then its sandbox directories."""
        removed = remove_leftover_containers(self.client, self.work_dir)
        return removed + remove_stale_sandboxes(self.work_dir)


def container_ulimits(limits: Limits) -> list[Any]:
    """The rlimits every backend sets (see set_common_rlimits): no core dumps, file size, CPU time."""
    from docker.types import Ulimit

    ulimits = [
        Ulimit(name="core", soft=0, hard=0),
        Ulimit(name="fsize", soft=limits.max_output_bytes, hard=limits.max_output_bytes),
    ]
    if limits.cpu_seconds is not None:
        ulimits.append(Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1))
    return ulimits


def remove_leftover_containers(
    client: docker.DockerClient, work_dir: Path, abandoned_after: timedelta = ABANDONED_AFTER
) -> list[str]:
    """Every sandbox container of this work dir, and any other sandbox container stopped long ago.

    A live process removes its stopped containers within seconds, so one stopped for minutes belongs
    to a process that died (its runner ended the job when the process's attach connection closed).
    """
    import docker.errors

    ours = client.api.containers(all=True, filters={"label": f"{LABEL_WORK_DIR}={work_dir}"})
    stopped = client.api.containers(all=True, filters={"label": LABEL_SANDBOX, "status": ["exited", "dead"]})
    now = datetime.now(UTC)
    removed = []
    our_ids = {c["Id"] for c in ours}
    for container in [*ours, *(c for c in stopped if c["Id"] not in our_ids)]:
        try:
            if container["Id"] not in our_ids:
                finished = client.api.inspect_container(container["Id"])["State"].get("FinishedAt", "")
                if now - parse_engine_time(finished) < abandoned_after:
                    continue
            client.api.remove_container(container["Id"], force=True, v=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as e:
            # The engine is removing it already (its auto-remove, or another process's clean-up): it is going.
            if e.status_code != 409 or "already in progress" not in str(e.explanation or ""):
                raise
        removed.append((container.get("Labels") or {}).get(LABEL_SANDBOX, container["Id"][:12]))
    if removed:
        logger.warning("removed %d sandbox container(s) left by a previous process: %s",
                       len(removed), ", ".join(removed))
    return removed


def parse_engine_time(text: str) -> datetime:
    """The engine's RFC 3339 times carry nanoseconds; fromisoformat takes at most microseconds."""
    try:
        parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    except ValueError:
        return datetime.now(UTC)  # unreadable: treat as just stopped, never remove by mistake
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ContainerTree:
    """One container: created, attached (stdin, stdout, stderr) before it starts, waited for, removed."""

    def __init__(
        self,
        client: docker.DockerClient,
        config: dict[str, Any],
        resources: ContainerResources,
        control: ControlMessages,
        log: BoundedLog,
    ) -> None:
        import docker.errors

        self._api = client.api
        self.resources = resources
        self.exit: Exit | None = None
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._status_code: int | None = None
        self._removed = False
        self._sinks = {_STDOUT: control.feed, _STDERR: log.feed}
        self._stopping = threading.Event()
        try:
            self.id: str = self._api.create_container_from_config(config)["Id"]
        except docker.errors.DockerException as e:
            raise SandboxError(f"cannot create the sandbox container: {e}") from e
        try:
            # Attached before start, so not a byte of the runner's output is missed.
            self._io = self._api.attach_socket(self.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._sock: socket.socket = self._io._sock
            self._api.start(self.id)
            self.pid: int = int(self._api.inspect_container(self.id)["State"]["Pid"])
        except Exception as e:
            self._remove()
            raise SandboxError(f"cannot start the sandbox container: {e}") from e
        resources.bind(self.pid, self.kill)
        self._pump = threading.Thread(target=self._read_output, name=f"sandbox-pump-{self.id[:12]}", daemon=True)
        self._pump.start()
        self._waiter = threading.Thread(target=self._wait, name=f"sandbox-wait-{self.id[:12]}", daemon=True)
        self._waiter.start()

    def stage(self, fmu_dir: Path, spec_json: bytes, job_dir: Path) -> None:
        stage_job(fmu_dir, spec_json, job_dir)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(GO)

    def wait_exited(self, deadline: float) -> bool:
        if self._exited.is_set():
            return True
        self.resources.usage()  # the cgroup vanishes with the container: keep the latest figures
        return self._exited.wait(max(deadline - time.monotonic(), 0.0))

    def kill(self) -> None:
        import docker.errors

        with self._lock:
            if self._exited.is_set() or self._removed:
                return
            # 409: not running any more; 404: gone. Either way nothing is left to kill.
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self._api.kill(self.id)

    def finish(self, drain_timeout: float) -> Exit:
        self.resources.usage()
        self.kill()
        exit_ = self._collect()
        self._pump.join(drain_timeout)
        self._stopping.set()
        self._pump.join()
        return exit_

    def dispose(self) -> None:
        self.finish(0)
        self._remove()
        with contextlib.suppress(OSError):
            self._io.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def _collect(self) -> Exit:
        import docker.errors

        with self._lock:
            if self.exit is not None:
                return self.exit
        if not self._exited.wait(_EXIT_TIMEOUT_S):
            logger.error("sandbox container %s did not stop after kill", self.id[:12])
            return Exit(None, None, None)
        status = None
        try:
            state = self._api.inspect_container(self.id)["State"]
            self.resources.record_oom(bool(state.get("OOMKilled")))
            code = state.get("ExitCode", self._status_code)
        except docker.errors.NotFound:
            code = self._status_code
        if code is not None:
            status = (int(code) & 0xFF) << 8  # a wait status of a normal exit with that code
        with self._lock:
            if self.exit is None:
                self.exit = Exit(status, None, None)
            return self.exit

    def _wait(self) -> None:
        """Blocks on the engine's wait endpoint until the container stops (or the engine goes away)."""
        try:
            result = self._api.wait(self.id, timeout=None)
            self._status_code = result.get("StatusCode")
        except Exception:
            logger.warning("lost the wait on sandbox container %s", self.id[:12], exc_info=True)
        finally:
            self._exited.set()

    def _read_output(self) -> None:
        """Demultiplex the attach stream into control messages (stdout) and log (stderr)."""
        buffer = bytearray()
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([self._sock], [], [], _POLL_S)
                if not readable:
                    continue
                data = self._sock.recv(_READ_CHUNK)
            except (OSError, ValueError):
                return
            if not data:
                return
            buffer += data
            while len(buffer) >= _FRAME_HEADER:
                size = int.from_bytes(buffer[4:8], "big")
                if len(buffer) < _FRAME_HEADER + size:
                    break
                sink = self._sinks.get(buffer[0])
                if sink is not None and size:  # an empty payload would read as end of stream
                    sink(bytes(buffer[_FRAME_HEADER : _FRAME_HEADER + size]))
                del buffer[: _FRAME_HEADER + size]

    def _remove(self) -> None:
        import docker.errors

        with self._lock:
            if self._removed:
                return
            self._removed = True
        for attempt in range(3):
            try:
                self._api.remove_container(self.id, force=True, v=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:  # e.g. "removal already in progress"
                if attempt == 2:
                    logger.exception("cannot remove sandbox container %s", self.id[:12])
                time.sleep(0.2)
