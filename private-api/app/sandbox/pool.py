"""Warm sandboxes: kept started (runner up, FMPy imported) so a run does not pay Python's
start-up. Each sandbox still takes exactly one job and is thrown away after it."""

from __future__ import annotations

import collections
import logging
import threading

from app.sandbox.base import Limits, Sandbox, SandboxBackend, SandboxError

logger = logging.getLogger(__name__)

_RETRY_DELAY_S = 1.0


class SandboxPool:
    def __init__(self, backend: SandboxBackend, limits: Limits, size: int) -> None:
        self.backend = backend
        self.limits = limits.fixed_at_start()
        self.size = size
        self._idle: collections.deque[Sandbox] = collections.deque()
        self._wanted = threading.Condition()
        self._closed = False
        # bwrap's --die-with-parent follows the *thread* that started it, so sandboxes are
        # started by this long-lived thread, never by short-lived callers.
        self._spawner = threading.Thread(target=self._spawn_loop, name="sandbox-spawner", daemon=True)

    def start(self) -> None:
        if self.size > 0:
            self._spawner.start()

    def acquire(self, limits: Limits) -> Sandbox:
        """A warm sandbox when one is idle and the limits fit, else a freshly started one."""
        if limits.fixed_at_start() == self.limits:
            with self._wanted:
                sandbox = self._idle.popleft() if self._idle else None
                self._wanted.notify()
            if sandbox is not None:
                return sandbox
        return self.backend.start(limits)

    def _spawn_loop(self) -> None:
        while True:
            with self._wanted:
                while not self._closed and len(self._idle) >= self.size:
                    self._wanted.wait()
                if self._closed:
                    return
            try:
                sandbox = self.backend.start(self.limits)
            except SandboxError:
                logger.exception("cannot pre-start a sandbox; retrying")
                with self._wanted:
                    self._wanted.wait(_RETRY_DELAY_S)
                continue
            with self._wanted:
                if self._closed:
                    sandbox.close()
                    return
                self._idle.append(sandbox)

    def close(self) -> None:
        with self._wanted:
            self._closed = True
            idle, self._idle = list(self._idle), collections.deque()
            self._wanted.notify_all()
        for sandbox in idle:
            sandbox.close()
        if self._spawner.is_alive():
            self._spawner.join(timeout=30)
