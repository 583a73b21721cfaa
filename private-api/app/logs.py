"""Process logging: text for a terminal, or JSON lines for a log pipeline (``FMU_GATEWAY_LOG_FORMAT``),
every record carrying what it belongs to where known: ``request_id``, ``user_id``, ``run_id``,
``sweep_id``.

The ids live in one context per request (``RequestIdMiddleware`` opens it) or per unit of a
worker's work (``bound``): a mutable dict, so an id bound in a thread-pool hop of the request (its
authentication) is seen by every later record of the request. Nothing here logs a secret: the
records are the service's own messages; the code never puts a key, token or secret in one
(``tests/api/test_logs.py`` holds it to that with canaries).
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

IDS = ("request_id", "user_id", "run_id", "sweep_id")
_context: ContextVar[dict[str, str] | None] = ContextVar("log_context", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """A context of its own for the records inside (a request, a run a worker executes)."""
    token = _context.set({name: value for name, value in ids.items() if value})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: str | None) -> None:
    """Add ids to the current context (seen by its later records, in any thread of the request)."""
    context = _context.get()
    if context is not None:
        context.update({name: value for name, value in ids.items() if value})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in IDS if getattr(record, name, None)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def config(log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the process, uvicorn's loggers included."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["context"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": "INFO"},
        "loggers": {name: {"handlers": ["main"], "level": "INFO", "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure(log_format: str) -> dict[str, Any]:
    """Set this process's logging up; returns the configuration (uvicorn takes it as ``log_config``)."""
    settings = config(log_format)
    logging.config.dictConfig(settings)
    return settings
