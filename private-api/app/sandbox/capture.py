"""Reads a sandbox's stdout (control messages) and stderr (log) without letting either grow unbounded."""

from __future__ import annotations

import json
import os
import selectors
import threading
import time
from typing import Any

_MAX_CONTROL_BYTES = 64 << 10
_READ_CHUNK = 64 << 10
_POLL_S = 0.1


class BoundedLog:
    """Keeps the first and last `limit / 2` bytes and counts what was dropped in between."""

    def __init__(self, limit: int) -> None:
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._total += len(data)
            room = self._head_limit - len(self._head)
            if room > 0:
                self._head += data[:room]
                data = data[room:]
            self._tail += data
            # Trim rarely: deleting from the front of a bytearray copies the rest.
            if len(self._tail) > 2 * self._tail_limit + _READ_CHUNK:
                del self._tail[: len(self._tail) - self._tail_limit]

    def text(self) -> str:
        with self._lock:
            tail = self._tail[-self._tail_limit :] if self._tail_limit else b""
            dropped = self._total - len(self._head) - len(tail)
            marker = f"\n[... {dropped} bytes of log truncated ...]\n".encode() if dropped else b""
            return bytes(self._head + marker + tail).decode("utf-8", "replace")


class ControlMessages:
    """JSON-line messages from the runner, keyed by event; the first of each event wins."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._received = 0
        self._events: dict[str, dict[str, Any]] = {}
        # Every message with the (monotonic) time it arrived, for events that repeat (a sweep chunk's).
        self._sequence: list[tuple[float, dict[str, Any]]] = []
        self._closed = False
        self._changed = threading.Condition()

    def feed(self, data: bytes) -> None:
        if not data:  # end of the stream: the writer (and every copy of its end) is gone
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            return
        self._received += len(data)
        if self._received > _MAX_CONTROL_BYTES:
            return  # a flooding model gets no more messages accepted
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            self._accept(bytes(line))

    def _accept(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            return
        with self._changed:
            self._events.setdefault(message["event"], message)
            self._sequence.append((time.monotonic(), message))
            self._changed.notify_all()

    def get(self, event: str) -> dict[str, Any] | None:
        with self._changed:
            return self._events.get(event)

    def all(self, *events: str) -> list[tuple[float, dict[str, Any]]]:
        """Every message of these events, in order, with its arrival time."""
        with self._changed:
            return [(at, m) for at, m in self._sequence if m["event"] in events]

    def wait_closed(self, timeout: float, or_event: str | None = None) -> bool:
        """True once the stream has ended (every writer gone), or `or_event` has arrived."""
        with self._changed:
            return self._changed.wait_for(lambda: self._closed or or_event in self._events, max(timeout, 0.0))

    @property
    def closed(self) -> bool:
        with self._changed:
            return self._closed

    def wait_for(self, event: str, timeout: float) -> dict[str, Any] | None:
        with self._changed:
            self._changed.wait_for(lambda: event in self._events, timeout)
            return self._events.get(event)


class OutputPump(threading.Thread):
    """One thread draining both pipes, so the sandbox never blocks on a full pipe."""

    def __init__(self, control_fd: int, log_fd: int, control: ControlMessages, log: BoundedLog, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._sinks = {control_fd: control.feed, log_fd: log.feed}
        self._log_fd = log_fd
        self._stopping = threading.Event()

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for fd in self._sinks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and not self._stopping.is_set():
                # The log first: what a runner wrote before its "done" is in the log when "done" is seen.
                for key, _ in sorted(selector.select(_POLL_S), key=lambda event: event[0].fd != self._log_fd):
                    fd = int(key.fd)
                    data = os.read(fd, _READ_CHUNK)
                    self._sinks[fd](data)  # b"" tells the sink the stream ended
                    if not data:
                        selector.unregister(fd)

    def stop(self, timeout: float) -> None:
        """Wait up to `timeout` for end of output, then stop reading (a leaked process may hold a pipe)."""
        self.join(timeout)
        self._stopping.set()
        self.join()
