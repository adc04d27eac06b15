"""Cookbook step 1: registration, once for the whole pool.

The client registers (DCR) and fetches the access token on first need, under a Redis lock, and
keeps both encrypted in SQL (worker.registration). This keeps the token fresh ahead of its
expiry, so no play waits for a token request; the sweeper asks for it every TOKEN_UPKEEP_S.
"""

from __future__ import annotations

from worker.runtime import Runtime


def keep_token_fresh(rt: Runtime) -> None:
    """Each served service provider's token (each its own registration); one that fails does
    not keep the others from theirs (the first failure is raised after)."""
    failures: list[Exception] = []
    for service_provider in rt.service_providers():
        try:
            rt.adobe_for(service_provider).access_token()
        except Exception as exc:  # noqa: BLE001 (raised again below)
            failures.append(exc)
    if failures:
        raise failures[0]
