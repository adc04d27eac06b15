"""Structured logs (structlog), correlated by request, job and device, with secrets kept out:
JSON lines for a collector, or text for a person at a terminal (PASSFLOW_LOG_FORMAT).

Secrets (client secrets, access tokens, media tokens, API tokens) and profile attributes
(personal data) never reach a log: callers do not pass them, and a last processor drops any
field whose name says it holds one, wherever it comes from.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SENSITIVE = re.compile(
    r"(secret|token|password|authorization|attributes|api[_-]?key|signature|cookie)", re.I)
# Names, not secrets: a token's name says whose token acted (the audit's actor).
_NAMES = frozenset({"event", "token_name"})
_configured = False


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key not in _NAMES and _SENSITIVE.search(key):
            event[key] = "[redacted]"
    return event


# Query values a log line must not carry: activation codes (a code shown on a TV is a sign-in
# waiting to happen for whoever reads it), and the console's search, which may be one.
_SECRET_QUERY = re.compile(r"([?&](?:code|token|q)=)[^&#]*", re.I)


class _AccessLogRedaction(logging.Filter):
    """uvicorn's access lines name the path with its query: codes are kept out of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], _SECRET_QUERY.sub(r"\1[redacted]", args[2]), *args[3:])
        return True


def _renderer(stream, fmt: str | None):
    if fmt is None:
        from passflow.settings import get_settings

        fmt = get_settings().log_format
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "console" or (fmt == "auto" and tty):
        return structlog.dev.ConsoleRenderer(colors=tty)
    return structlog.processors.JSONRenderer()


def configure(level: int = logging.INFO, *, stream=None, fmt: str | None = None) -> None:
    """One stream (stderr) for passflow's own loggers and the libraries' stdlib loggers: JSON
    lines, or text when `fmt` (PASSFLOW_LOG_FORMAT) says so or is auto at a terminal."""
    global _configured
    stream = stream or sys.stderr
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    renderer = _renderer(stream, fmt)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([] if isinstance(renderer, structlog.dev.ConsoleRenderer)
                      else [structlog.processors.format_exc_info]),
                    renderer],
        foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_passflow", False)]
    handler._passflow = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings (e.g. Celery's as root) in the same stream
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _AccessLogRedaction) for f in access.filters):
        access.addFilter(_AccessLogRedaction())
    # httpx logs every request line at INFO; URLs hold no secret, but they are noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars
