"""Start-up clean-up of sandboxes a previous server process left behind (crash, kill -9).

bwrap's sandboxes die with their parent, but their directories and cgroups stay, and a
`process` sandbox may still be running. Sandbox ids are random, so everything carrying the id
of a directory in our work dir is ours to remove.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from app.sandbox.resources import (
    CGROUP_PREFIX,
    SANDBOX_ID_ENV,
    kill_until_gone,
    parse_mountinfo,
    parse_proc_cgroup,
    processes_with_environ,
    remove_cgroup,
)

logger = logging.getLogger(__name__)


def _own_cgroup_dirs() -> list[Path]:
    try:
        mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
        own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    except OSError:
        return []
    return [mounts[c] / own[c].lstrip("/") for c in mounts if c in own]


def remove_stale_sandboxes(work_dir: Path) -> list[str]:
    """Kill what still runs of every sandbox directory under ``work_dir``, then remove its cgroups
    and the directory. Call before this process starts sandboxes of its own."""
    if not work_dir.is_dir():
        return []
    removed = []
    cgroup_roots = _own_cgroup_dirs()
    for directory in sorted(work_dir.glob("sbx-*")):
        sandbox_id = directory.name
        marker = f"{SANDBOX_ID_ENV}={sandbox_id}".encode()
        kill_until_gone(lambda marker=marker: processes_with_environ(marker))  # type: ignore[misc]
        for root in cgroup_roots:
            cgroup = root / (CGROUP_PREFIX + sandbox_id)
            if cgroup.is_dir():
                remove_cgroup(cgroup)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(sandbox_id)
    if removed:
        logger.warning("removed %d sandbox(es) left by a previous process: %s", len(removed), ", ".join(removed))
    return removed
