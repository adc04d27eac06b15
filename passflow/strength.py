"""How strong a secret passflow is given must be (PASSFLOW_SECRET_KEY, API tokens)."""

from __future__ import annotations

import secrets

MIN_SECRET_CHARS = 32
_MIN_DISTINCT_CHARS = 10


def weakness(value: str) -> str | None:
    """Why `value` is too weak for a secret key or an API token, or None when it will do."""
    if value != value.strip() or any(ch.isspace() for ch in value):
        return "must not contain spaces or other white space"
    if len(value) < MIN_SECRET_CHARS:
        return f"must be at least {MIN_SECRET_CHARS} characters (it has {len(value)})"
    if len(set(value)) < _MIN_DISTINCT_CHARS:
        return f"must mix at least {_MIN_DISTINCT_CHARS} different characters"
    return None


def new_secret() -> str:
    """A secret that passes `weakness`: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)
