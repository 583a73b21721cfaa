"""Deprecation warnings that point at the user's line, however deep in the SDK they are raised."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def warn_deprecated(message: str) -> None:
    """A ``DeprecationWarning`` attributed to the first caller outside this package: the same line
    whether it came through ``simulate``, ``runs.create`` or their async twins."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, DeprecationWarning, stacklevel=level)
