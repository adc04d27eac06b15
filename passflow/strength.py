"""How strong a secret passflow is given must be (PASSFLOW_SECRET_KEY, API tokens, the webhook
secret)."""

from __future__ import annotations

import math
import secrets
from collections import Counter

MIN_SECRET_CHARS = 32
_MIN_DISTINCT_CHARS = 10
# What a random secret of the alphabet it uses would hold: 32 random lower-case letters
# (150 bits) are refused, `new_secret()` (about 256 bits) passes.
MIN_BITS = 160
# What its characters as they are spread hold (repeats and runs lower it).
MIN_SPREAD_BITS = 128


def _alphabet_bits(value: str) -> float:
    pool = sum(size for present, size in (
        (any(c.islower() for c in value), 26), (any(c.isupper() for c in value), 26),
        (any(c.isdigit() for c in value), 10),
        (any(not c.isalnum() for c in value), 32)) if present)
    return len(value) * math.log2(max(pool, 2))


def _spread_bits(value: str) -> float:
    counts = Counter(value)
    return -sum(n * math.log2(n / len(value)) for n in counts.values())


def weakness(value: str) -> str | None:
    """Why `value` is too weak for a secret key, an API token or a webhook secret, or None when
    it will do (a value `new_secret()` or a Fernet key would give)."""
    if value != value.strip() or any(ch.isspace() for ch in value):
        return "must not contain spaces or other white space"
    if len(value) < MIN_SECRET_CHARS:
        return f"must be at least {MIN_SECRET_CHARS} characters (it has {len(value)})"
    if len(set(value)) < _MIN_DISTINCT_CHARS:
        return f"must mix at least {_MIN_DISTINCT_CHARS} different characters"
    if _alphabet_bits(value) < MIN_BITS or _spread_bits(value) < MIN_SPREAD_BITS:
        return ("is too predictable (mix letters of both cases, digits and symbols, or make it "
                "longer)")
    return None


def new_secret() -> str:
    """A secret that passes `weakness`: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)
