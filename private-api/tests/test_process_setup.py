"""What ``serve`` and ``worker`` set up in their own process before any thread starts."""

from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest


def test_malloc_arenas_are_capped_where_glibc_allows_it() -> None:
    if platform.libc_ver()[0] != "glibc" or ctypes.util.find_library("c") is None:
        pytest.skip("not glibc: there is no mallopt to cap arenas with")
    # In a fresh interpreter, as serve and worker do it: before any thread exists.
    probe = "from app.admin import limit_malloc_arenas; print(limit_malloc_arenas())"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "True\n"
