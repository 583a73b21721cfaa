"""Warm sandboxes, so a run does not pay Python's start-up.

With reuse (bwrap, docker): one zygote per tenant (`app.sandbox.warm`), started with the runner's imports
done, forks an isolated sandbox per run; it serves that tenant only, and is retired after
`Reuse.max_runs` runs or `Reuse.idle_s` idle seconds. Zygotes are pre-started unassigned and
given to a tenant at its first run. Without reuse (or for a backend without zygotes): single-use
sandboxes kept started, each thrown away after its one job.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from app.sandbox.base import Limits, Sandbox, SandboxBackend, SandboxError
from app.sandbox.warm import Reuse, Zygote

logger = logging.getLogger(__name__)

_RETRY_DELAY_S = 1.0
_ZYGOTE_WAIT_S = 60.0
_SWEEP_S = 5.0


class SandboxPool:
    def __init__(self, backend: SandboxBackend, limits: Limits, size: int, reuse: Reuse | None = None) -> None:
        self.backend = backend
        self.limits = limits.fixed_at_start()
        self.size = size
        # bwrap and docker have zygotes; process keeps one sandbox per run.
        self.reuse = reuse if backend.has_zygotes else None
        self._idle: collections.deque[Sandbox] = collections.deque()
        self._spare: collections.deque[Zygote] = collections.deque()  # started, no tenant yet
        self._tenants: dict[str, Zygote] = {}
        self._demand = 0  # callers waiting for a spare zygote
        self._wanted = threading.Condition()
        self._closed = False
        # bwrap's --die-with-parent follows the *thread* that started it, so sandboxes are
        # started by this long-lived thread, never by short-lived callers.
        self._spawner = threading.Thread(target=self._spawn_loop, name="sandbox-spawner", daemon=True)

    def start(self) -> None:
        if self.size > 0 or self.reuse is not None:
            self._spawner.start()

    def acquire(self, limits: Limits, tenant: str | None = None) -> Sandbox:
        """A sandbox for one run: forked from `tenant`'s warm zygote when reuse applies, else a
        pre-started single-use one when the limits fit, else a freshly started one."""
        fits = limits.fixed_at_start() == self.limits
        if self.reuse is not None and tenant is not None and fits:
            zygote = self._zygote_for(tenant)
            try:
                return zygote.fork(limits)
            except SandboxError as e:
                zygote.discard(f"cannot fork a run: {e}")
                logger.warning("warm sandbox of %s failed (%s); starting a fresh one", tenant, e)
                return self._zygote_for(tenant).fork(limits)
        if fits and self.reuse is None:
            with self._wanted:
                sandbox = self._idle.popleft() if self._idle else None
                self._wanted.notify()
            if sandbox is not None:
                return sandbox
        return self.backend.start(limits)

    def _zygote_for(self, tenant: str) -> Zygote:
        """The tenant's zygote; a spare one becomes theirs when they have none (or theirs is spent)."""
        assert self.reuse is not None
        deadline = time.monotonic() + _ZYGOTE_WAIT_S
        with self._wanted:
            zygote = self._tenants.get(tenant)
            if zygote is not None and self._spent(zygote):
                del self._tenants[zygote.tenant or tenant]
                self._retire_later(zygote)
                zygote = None
            if zygote is not None:
                return zygote
            self._demand += 1
            self._wanted.notify_all()
            try:
                while not self._spare and not self._closed:
                    if not self._wanted.wait(deadline - time.monotonic()):
                        raise SandboxError("no warm sandbox could be started in time")
            finally:
                self._demand -= 1
            if self._closed:
                raise SandboxError("the sandbox pool is closed")
            zygote = self._spare.popleft()
            zygote.tenant = tenant
            self._tenants[tenant] = zygote
            self._wanted.notify_all()  # the spawner replaces the spare
            evicted = self._evict_over_limit()
        for old in evicted:
            old.retire()
        return zygote

    def _spent(self, zygote: Zygote) -> bool:
        assert self.reuse is not None
        idle = zygote.busy == 0 and time.monotonic() - zygote.last_used > self.reuse.idle_s
        return not zygote.usable() or zygote.runs_started >= self.reuse.max_runs or idle

    def _retire_later(self, zygote: Zygote) -> None:
        threading.Thread(target=zygote.retire, name="sandbox-retire", daemon=True).start()

    def _evict_over_limit(self) -> list[Zygote]:
        """Least recently used idle zygotes beyond `max_sandboxes` (caller holds the lock)."""
        assert self.reuse is not None
        over = len(self._tenants) + len(self._spare) - self.reuse.max_sandboxes
        idle = sorted((z for z in self._tenants.values() if z.busy == 0), key=lambda z: z.last_used)
        evicted = idle[: max(over, 0)]
        for zygote in evicted:
            del self._tenants[zygote.tenant or ""]
        return evicted

    def _retire_stale(self) -> list[Zygote]:
        """Zygotes spent by age, runs or harm (caller holds the lock)."""
        stale = [z for z in self._tenants.values() if self._spent(z)]
        for zygote in stale:
            del self._tenants[zygote.tenant or ""]
        return stale

    def _spawn_loop(self) -> None:
        while True:
            with self._wanted:
                if self._closed:
                    return
                stale = self._retire_stale() if self.reuse is not None else []
                if not stale and not self._wants_one():
                    self._wanted.wait(_SWEEP_S if self.reuse is not None else None)
                    continue
            for zygote in stale:
                zygote.retire()
            if not self._wants_one():
                continue
            try:
                started: Sandbox | Zygote
                if self.reuse is not None:
                    started = self.backend.start_zygote(self.limits, prefork=True)
                    started.fork_spare()  # its first run need not wait for its namespaces either
                else:
                    started = self.backend.start(self.limits)
            except SandboxError:
                logger.exception("cannot pre-start a sandbox; retrying")
                with self._wanted:
                    self._wanted.wait(_RETRY_DELAY_S)
                continue
            with self._wanted:
                if self._closed:
                    started.close()
                    return
                if isinstance(started, Zygote):
                    self._spare.append(started)
                else:
                    self._idle.append(started)
                self._wanted.notify_all()

    def _wants_one(self) -> bool:
        if self.reuse is not None:
            return len(self._spare) < max(self.size, self._demand)
        return len(self._idle) < self.size

    def close(self) -> None:
        with self._wanted:
            self._closed = True
            idle: list[Sandbox | Zygote] = [*self._idle, *self._spare, *self._tenants.values()]
            self._idle, self._spare, self._tenants = collections.deque(), collections.deque(), {}
            self._wanted.notify_all()
        for sandbox in idle:
            sandbox.close()
        if self._spawner.is_alive():
            self._spawner.join(timeout=30)
