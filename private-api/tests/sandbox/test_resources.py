"""Finding our cgroup (v1, v2, hybrid) and the cgroup/rlimit controls on real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.sandbox.base import Limits
from app.sandbox.resources import (
    CgroupControl,
    RlimitControl,
    cgroup_version,
    create_resource_control,
    parse_mountinfo,
    parse_proc_cgroup,
)

V1_MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_CGROUP = "9:pids:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/\n"
V2_MOUNTINFO = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V2_CGROUP = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/server.scope\n"


class TestDiscovery:
    def test_v1_and_hybrid_hosts_use_the_v1_controllers(self) -> None:
        mounts, own = parse_mountinfo(V1_MOUNTINFO), parse_proc_cgroup(V1_CGROUP)
        assert mounts["memory"] == Path("/sys/fs/cgroup/memory")
        assert mounts["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
        assert own["memory"] == "/process_api/abc" and own["cpuacct"] == "/"
        assert cgroup_version(mounts, own) == 1

    def test_pure_v2_host(self) -> None:
        mounts, own = parse_mountinfo(V2_MOUNTINFO), parse_proc_cgroup(V2_CGROUP)
        assert mounts == {"": Path("/sys/fs/cgroup")}
        assert own[""].endswith("server.scope")
        assert cgroup_version(mounts, own) == 2

    def test_no_cgroups(self) -> None:
        assert cgroup_version({}, {}) is None


class TestControls:
    def test_rlimit_fallback_limits_address_space_and_file_size(self) -> None:
        limits = Limits(memory_bytes=768 << 20, max_output_bytes=1 << 20)
        control = create_resource_control(limits, "sbx-test-rlimit", use_cgroups=False)
        assert isinstance(control, RlimitControl)
        script = "import resource as r; print(r.getrlimit(r.RLIMIT_AS)[0], r.getrlimit(r.RLIMIT_FSIZE)[0])"
        out = subprocess.run(
            ["python3", "-c", script], preexec_fn=control.preexec, capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == [str(768 << 20), str(1 << 20)]

    def test_cgroup_holds_the_tree_and_is_removed(self) -> None:
        control = create_resource_control(Limits(), "sbx-test-cgroup")
        if not isinstance(control, CgroupControl):
            pytest.skip("no writable cgroup here")
        try:
            child = subprocess.Popen(["sleep", "30"], preexec_fn=control.preexec, start_new_session=True)
            control.attach(child.pid)
            assert control.pids() == {child.pid}
            control.kill_all()
            assert child.wait(5) == -9
        finally:
            control.close()
        assert not any(d.exists() for d in control.dirs)


def test_bwrap_binds_the_python_installation_after_the_private_tmp(tmp_path: Path) -> None:
    """A venv under /tmp (a checkout there) must not be hidden by the sandbox's own /tmp."""
    from app.sandbox.bwrap import BubblewrapBackend
    from app.sandbox.staging import SandboxDirs

    backend = BubblewrapBackend(work_dir=tmp_path)
    backend.python_dirs = ("/tmp/checkout/.venv", *backend.python_dirs)
    args = backend.filesystem_args(SandboxDirs.create(tmp_path, "sbx-order"), Limits())
    tmpfs = args.index("--tmpfs")
    assert args[tmpfs + 1] == "/tmp"
    assert args.index("/tmp/checkout/.venv") > tmpfs
