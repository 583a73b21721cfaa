"""Fairness across tenants: which tenant's queued run a free worker serves next.

The queue (Redis or the embedded pool's) is FIFO, and a sweep puts a message per few children
in it: behind one tenant's 10,000-child sweep, another tenant's single run would wait for every
one of them. So a message is a turn of a free worker, not an order: before its own run, the
worker serves the tenant with the fewest runs running (across every worker: the database counts
them), oldest queued run first among equals. Every message still ends by executing its own run
(or finding it taken), so no queued run is left without a message; the detour costs one indexed
query when no other tenant waits.

The tier's ``max_concurrent_runs`` is enforced at submission, across every process (a sweep is
one submission); this decides only the order in which admitted runs get a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, order=True)
class Waiting:
    """A user with runs queued, as the scheduler ranks them: fewest running first, then the one
    whose oldest queued run is oldest."""

    running: int
    first_queued: datetime
    user_id: str


def next_tenant(waiting: Sequence[Waiting], own: str) -> str | None:
    """The tenant to serve before the message of ``own``'s run, or None: ``own`` goes now. Another
    tenant goes first when it has fewer runs running, or as many and has waited longer."""
    mine = next((tenant for tenant in waiting if tenant.user_id == own), None)
    if mine is None:
        return None  # the message's run is taken already: it ends at once, no detour needed
    best = min(waiting)
    return None if best.user_id == own else best.user_id
