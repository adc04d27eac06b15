"""Cookbook step 1: registration, once for the whole pool.

The client registers (DCR) and fetches the access token on first need, under a Redis lock, and
keeps both encrypted in SQL (worker.registration). This keeps the token fresh ahead of its
expiry, so no play waits for a token request; the sweeper asks for it every TOKEN_UPKEEP_S.
"""

from __future__ import annotations

from worker.runtime import Runtime


def keep_token_fresh(rt: Runtime) -> None:
    rt.adobe.access_token()
