from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from docker_engine import RUNNER_IMAGE, require_docker, sandbox_containers

from app.sandbox import Limits, create_backend
from app.sandbox.cleanup import remove_stale_sandboxes
from app.sandbox.docker import LABEL_SANDBOX, LABEL_WORK_DIR, connect, remove_leftover_containers
from app.sandbox.resources import SANDBOX_ID_ENV


def test_stale_sandboxes_are_killed_and_removed(tmp_path: Path) -> None:
    stale = tmp_path / "sbx-0123456789abcdef"
    (stale / "job").mkdir(parents=True)
    # A leftover runner of a crashed server: detached, carrying the sandbox's id in its environment.
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                                env={**os.environ, SANDBOX_ID_ENV: stale.name})
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 env={**os.environ, SANDBOX_ID_ENV: "sbx-not-ours"})
    try:
        time.sleep(0.2)
        assert remove_stale_sandboxes(tmp_path) == [stale.name]
        assert leftover.wait(timeout=5) == -9
        assert not stale.exists()
        assert unrelated.poll() is None
    finally:
        for process in (leftover, unrelated):
            process.kill()
            process.wait()


def test_missing_work_dir_is_fine(tmp_path: Path) -> None:
    assert remove_stale_sandboxes(tmp_path / "absent") == []


# A worker that started two sandboxes (one running a job) and then died without closing them.
_CRASHING_WORKER = """
import os, sys, time
from pathlib import Path
from app.sandbox import Limits, create_backend
backend = create_backend("docker", work_dir=Path(sys.argv[1]))
sandboxes = [backend.start(Limits(memory_bytes=256 << 20)) for _ in range(2)]
for sandbox in sandboxes:
    assert sandbox.wait_ready(30)
print(" ".join(s.id for s in sandboxes), flush=True)
time.sleep(600)
"""


def test_containers_of_a_crashed_worker_are_removed_at_start_up(tmp_path: Path) -> None:
    require_docker()
    work_dir, other_dir = tmp_path / "sandboxes", tmp_path / "other"
    crashed = subprocess.Popen([sys.executable, "-c", _CRASHING_WORKER, str(work_dir)], stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).parents[2])
    survivor = create_backend("docker", work_dir=other_dir).start(Limits(memory_bytes=256 << 20))
    try:
        assert crashed.stdout is not None
        ids = crashed.stdout.readline().split()
        assert len(ids) == 2, "the crashing worker did not start its sandboxes"
        crashed.kill()  # SIGKILL: no finalizer, no close()
        crashed.wait()
        assert len(sandbox_containers(**{LABEL_WORK_DIR: str(work_dir)})) == 2

        removed = create_backend("docker", work_dir=work_dir).remove_leftovers()

        assert sorted(removed) == sorted(ids + ids)  # each one's container, then its directory
        assert sandbox_containers(**{LABEL_WORK_DIR: str(work_dir)}) == []
        assert list(work_dir.iterdir()) == []
        # Another process's sandboxes (another work dir) are left alone.
        assert len(sandbox_containers(**{LABEL_SANDBOX: survivor.id})) == 1
    finally:
        crashed.kill()
        survivor.close()
    assert sandbox_containers(**{LABEL_SANDBOX: survivor.id}) == []


def test_long_stopped_containers_of_any_work_dir_are_removed(tmp_path: Path) -> None:
    require_docker()
    client = connect()
    # Another process's: one stopped (its owner died), one still running (its owner is alive).
    labels = {LABEL_SANDBOX: "sbx-elsewhere", LABEL_WORK_DIR: str(tmp_path / "elsewhere")}
    stopped = client.containers.run(RUNNER_IMAGE, ["/opt/venv/bin/python", "-c", "pass"], detach=True,
                                    labels=labels, network_mode="none")
    running = client.containers.run(RUNNER_IMAGE, ["/opt/venv/bin/python", "-c", "import time; time.sleep(60)"],
                                    detach=True, labels=labels, network_mode="none")
    try:
        stopped.wait(timeout=30)
        # (Other stopped sandboxes on this engine may go too: the assertions look at ours only.)
        assert "sbx-elsewhere" not in remove_leftover_containers(client, tmp_path / "mine")  # stopped just now
        assert "sbx-elsewhere" in remove_leftover_containers(client, tmp_path / "mine", abandoned_after=timedelta(0))
        assert {c["Id"] for c in sandbox_containers(**labels)} == {running.id}
    finally:
        for container in (stopped, running):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        client.close()
