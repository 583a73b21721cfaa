"""Dispatcher interface: hands committed, queued run ids to whatever executes them."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Dispatcher(ABC):
    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def submit(self, run_id: str) -> None:
        """Called only after the run's row (and its credit hold) is committed."""

    @abstractmethod
    def shutdown(self) -> None: ...
