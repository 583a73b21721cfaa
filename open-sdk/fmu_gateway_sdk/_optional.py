"""Optional dependencies (pyarrow, numpy, pandas, matplotlib): imported when first needed, with an
error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

# module -> the extra of fmu-gateway-sdk that brings it
_EXTRAS = {"pyarrow": "arrow", "numpy": "arrow", "pandas": "pandas", "matplotlib": "plot"}


def import_optional(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` that says how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top, top)
        raise ImportError(
            f"{feature} needs {top}, which is not installed: pip install 'fmu-gateway-sdk[{extra}]'"
        ) from exc
