"""What `passflow api` and `passflow worker` check before they start: a process that cannot work
exits at once with one line naming the problem and its fix, instead of looking healthy."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

from passflow.database import schema_problem
from passflow.settings import Settings


def _shown(url: str) -> str:
    """A broker URL fit for a message: its password, if any, as *** (as for the database's)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def broker_problem(url: str, *, timeout_s: float = 3.0) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s)
    except ValueError as exc:
        return f"PASSFLOW_BROKER_URL is not a Redis URL ({exc})"
    try:
        client.ping()
    except redis.RedisError as exc:
        return (f"cannot reach the broker at {_shown(url)}: {str(exc).rstrip('.')}; "
                "check PASSFLOW_BROKER_URL")
    finally:
        client.close()
    return None


def startup_problem(settings: Settings) -> str | None:
    """The first reason the process cannot work, or None."""
    return schema_problem(settings.database_url) or broker_problem(settings.broker_url)
