"""The run cache: a run that computes exactly what an earlier succeeded run of the same user
computed (the same FMU bytes, the same run spec, the same runner) is answered with that run's
result at once, at the tier's cache-hit price, without a sandbox.

What is cached is a user's own runs (a grantee's runs of a shared model are the grantee's): no
result ever crosses tenants. A hit points at the run that computed it (``cached_from``), whose
result and log it serves; when result retention removes those, the hits go with them, and the
next identical run computes again. Runs opt out with ``cache: false``, models with
``deterministic: false``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import version
from typing import Any

from app.sandbox.child import runner_digest

# Spec fields that do not change what a succeeded run computed.
_NOT_COMPUTED = frozenset({"timeout_s"})
# Bumped when what a key covers changes: earlier keys then never match.
_KEY_VERSION = 1


@lru_cache(maxsize=1)
def runner_version() -> str:
    """What computes a result besides the model and its spec: the runner and the FMPy it drives."""
    return f"{runner_digest()}:fmpy-{version('fmpy')}"


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def base_key(fmu_sha256: str, spec: Mapping[str, Any]) -> str:
    """The hash of everything a run computes from but its start values: FMU bytes, the canonical
    spec (keys sorted, the run's own limits left out) and runner version. A sweep's children share
    it, so its base spec (an input table, say) is serialised once, not once per child."""
    computed = {name: value for name, value in spec.items() if name not in _NOT_COMPUTED and name != "start_values"}
    return hashlib.sha256(_canonical([_KEY_VERSION, runner_version(), fmu_sha256, computed])).hexdigest()


def child_key(base: str, start_values: Mapping[str, Any]) -> str:
    """The cache key of a run: its ``base_key`` and its start values."""
    return hashlib.sha256(base.encode() + _canonical(start_values)).hexdigest()


def cache_key(fmu_sha256: str, spec: Mapping[str, Any]) -> str:
    """The hash of what a run computes (``base_key`` and ``child_key`` in one)."""
    return child_key(base_key(fmu_sha256, spec), spec.get("start_values", {}))


def cacheable(deterministic: bool, requested: bool) -> bool:
    """Whether a run may be answered from (and later answer from) the run cache: the model says it is
    deterministic and the run did not opt out (``cache: false``)."""
    return deterministic and requested
