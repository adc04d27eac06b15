"""Structured JSON logs (structlog), correlated by job and device, with secrets kept out.

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
_configured = False


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key != "event" and _SENSITIVE.search(key):
            event[key] = "[redacted]"
    return event


def configure(level: int = logging.INFO, *, stream=None) -> None:
    """JSON lines on stderr for passflow's own loggers and the libraries' stdlib loggers."""
    global _configured
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
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_passflow", False)]
    handler._passflow = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request line at INFO; URLs hold no secret, but they are noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars
