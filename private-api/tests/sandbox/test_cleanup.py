from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from app.sandbox.cleanup import remove_stale_sandboxes
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
