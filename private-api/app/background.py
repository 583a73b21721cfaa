"""One home for the daemon threads a process runs beside its requests (lease renewer, dispatch
housekeeper, usage reporter): start, stop, and the event their loops wait on."""

from __future__ import annotations

import threading
from typing import ClassVar


class BackgroundThread:
    thread_name: ClassVar[str]
    join_timeout_s: ClassVar[float] = 10.0

    def __init__(self) -> None:
        # Set by stop(): loops wait on it between passes, so they wake and exit at once.
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout_s)
            self._thread = None

    def _loop(self) -> None:
        raise NotImplementedError
