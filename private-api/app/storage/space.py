"""Free space in blob storage: new work (an upload, a run, a sweep) is admitted only while the
storage keeps ``storage_min_free_bytes`` free, and a write that still meets a full disk is known
by its errno (``is_out_of_space``) wherever it happens."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

from app.errors import StorageFull
from app.storage.base import Storage

log = logging.getLogger(__name__)

# Every upload, run and sweep asks; a statvfs a second is what the answer costs.
FREE_SPACE_TTL_S = 1.0
_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_out_of_space(exc: BaseException) -> bool:
    """``exc`` is a write that found the file system (or the process's disk quota) full."""
    return isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE


class FreeSpace:
    """Whether blob storage has room for new work. Its free bytes are read at most once per
    ``ttl_s``; a backend without such a limit (S3), or ``min_free_bytes`` 0, never refuses."""

    def __init__(self, storage: Storage, min_free_bytes: int, *, ttl_s: float = FREE_SPACE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.min_free_bytes = min_free_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        # (when read, free bytes): one tuple, replaced whole, so concurrent readers need no lock.
        self._read: tuple[float, int | None] | None = None
        self._short = False

    def free_bytes(self) -> int | None:
        """The storage's free bytes as read within the last ``ttl_s``; None: no limit, or unreadable."""
        now = self.clock()
        read = self._read
        if read is None or now - read[0] >= self.ttl_s:
            try:
                free = self.storage.free_bytes()
            except OSError as exc:  # a missing directory is the readiness probe's to report
                log.warning("could not read the free space of blob storage: %s", exc)
                free = None
            read = self._read = (now, free)
        return read[1]

    def check(self) -> None:
        """Raise ``StorageFull`` while fewer than ``min_free_bytes`` are free."""
        if self.min_free_bytes <= 0:
            return
        free = self.free_bytes()
        short = free is not None and free < self.min_free_bytes
        if short != self._short:
            self._short = short
            if short:
                log.error("blob storage has %d bytes free, under FMU_GATEWAY_STORAGE_MIN_FREE_BYTES=%d: "
                          "refusing uploads, runs and sweeps (507 storage_full)", free, self.min_free_bytes)
            else:
                log.warning("blob storage has %s bytes free again: accepting uploads, runs and sweeps", free)
        if short:
            raise StorageFull()
