"""What only the docker backend has: the container's hardening as the engine reports it, and the
checks it makes before starting anything (engine, image, runner version, runtime)."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_engine import RUNNER_IMAGE, require_docker

from app.sandbox import Limits, SandboxError
from app.sandbox.docker import LABEL_SANDBOX, LABEL_WORK_DIR, ContainerTree, DockerBackend, connect

LIMITS = Limits(memory_bytes=256 << 20, deadline_s=10.0, max_processes=24, max_output_bytes=8 << 20, cpu_seconds=30)


@pytest.fixture
def docker_backend(tmp_path: Path) -> DockerBackend:
    require_docker()
    return DockerBackend(work_dir=tmp_path / "sandboxes", image=RUNNER_IMAGE, cpus=0.5)


def test_container_is_hardened_as_the_engine_reports(docker_backend: DockerBackend) -> None:
    with docker_backend.start(LIMITS) as sandbox:
        assert sandbox.wait_ready(30)
        tree = sandbox._tree
        assert isinstance(tree, ContainerTree)
        attrs = connect().api.inspect_container(tree.id)
        # Same host, same namespaces: the container's cgroup is found and read for CPU and memory.
        cgroups = sandbox.resources.dirs
        assert cgroups and all(tree.id in str(d) and d.is_dir() for d in cgroups), cgroups
        assert sandbox.resources.usage().peak_memory_bytes
    host, config = attrs["HostConfig"], attrs["Config"]
    assert config["User"] == "65534:65534"
    assert config["Labels"][LABEL_SANDBOX] == sandbox.id
    assert config["Labels"][LABEL_WORK_DIR] == str(docker_backend.work_dir)
    assert config["NetworkDisabled"] is True and host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert host["PidsLimit"] == LIMITS.max_processes
    assert host["Memory"] == host["MemorySwap"] == LIMITS.memory_bytes
    assert host["NanoCpus"] == 500_000_000
    assert host["Init"] is True
    assert host["LogConfig"]["Type"] == "none"  # output only through the attach stream, nothing on disk
    assert host["OomScoreAdj"] == 1000
    assert host["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={LIMITS.memory_bytes},mode=1777"}
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    assert ulimits == {"core": (0, 0), "fsize": (8 << 20, 8 << 20), "cpu": (30, 31)}
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {"/job", "/out"}
    assert mounts["/job"]["RW"] is False and mounts["/out"]["RW"] is True
    assert mounts["/job"]["Source"] == str(sandbox.dirs.job)
    # A stopped container is removed, not kept for inspection.
    assert connect().api.containers(all=True, filters={"label": f"{LABEL_SANDBOX}={sandbox.id}"}) == []


def test_missing_image_is_refused_with_how_to_build_it(tmp_path: Path) -> None:
    require_docker()
    with pytest.raises(SandboxError, match="make build"):
        DockerBackend(work_dir=tmp_path, image="fmu-gateway-runner:does-not-exist")


def test_image_of_another_runner_is_refused(tmp_path: Path) -> None:
    require_docker()
    client = connect()
    # The runner image relabelled with another digest stands for one built from another runner.py.
    container = client.containers.create(RUNNER_IMAGE)
    try:
        container.commit("fmu-gateway-runner", "stale-test", changes=["LABEL org.fmu-gateway.runner-digest=0"])
    finally:
        container.remove()
    try:
        with pytest.raises(SandboxError, match=r"another runner\.py"):
            DockerBackend(work_dir=tmp_path, image="fmu-gateway-runner:stale-test")
    finally:
        client.images.remove("fmu-gateway-runner:stale-test", force=True)


def test_unknown_runtime_is_refused(tmp_path: Path) -> None:
    require_docker()
    with pytest.raises(SandboxError, match="no runtime 'not-a-runtime'"):
        DockerBackend(work_dir=tmp_path, image=RUNNER_IMAGE, runtime="not-a-runtime")


def test_unreachable_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="cannot reach the Docker engine"):
        DockerBackend(work_dir=tmp_path, image=RUNNER_IMAGE, base_url=f"unix://{tmp_path}/no-such.sock")


def test_warm_containers_only_on_the_engine_s_own_runtime_without_mac_confinement(tmp_path: Path) -> None:
    """A zygote builds namespaces with the host kernel's calls: another runtime (gVisor) or an engine
    confining containers with AppArmor or SELinux keeps a container per run."""
    require_docker()
    options = connect().info().get("SecurityOptions") or []
    confined = any("apparmor" in option or "selinux" in option for option in options)
    assert DockerBackend(work_dir=tmp_path, image=RUNNER_IMAGE).has_zygotes is not confined
    chosen = DockerBackend(work_dir=tmp_path, image=RUNNER_IMAGE, runtime="runc")  # every engine has runc
    assert not chosen.has_zygotes
    with pytest.raises(SandboxError, match="no warm sandboxes"):
        chosen.start_zygote(Limits())
