"""A small tmpfs the storage-full tests fill up: a real file system that runs out of space.
Mounting one needs root (CAP_SYS_ADMIN); without it the test skips, saying why, or fails where
``FMU_GATEWAY_TEST_REQUIRE`` names tmpfs (``required.unavailable``)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from required import unavailable

FILLER = "filler.bin"


@contextmanager
def mounted_tmpfs(where: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``where`` (made if missing), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        unavailable("tmpfs", "no mount command here to mount a tmpfs with")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        unavailable("tmpfs", f"cannot mount a tmpfs (needs root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(where)], check=True)


def fill(where: Path, leave_free: int) -> Path:
    """Grow a filler file on ``where``'s file system until about ``leave_free`` bytes are free
    (to the page); returns it. Delete it to give the space back."""
    path = where / FILLER
    chunk = bytes(1 << 20)
    with path.open("ab") as handle:
        while (missing := shutil.disk_usage(where).free - leave_free) > 0:
            handle.write(chunk[:missing])
            handle.flush()
    return path


def free(where: Path) -> int:
    return shutil.disk_usage(where).free
