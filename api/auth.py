"""Bearer tokens of the HTTP API, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status


class TokenChecker:
    def __init__(self, tokens: list[str]):
        if not tokens:
            raise ValueError("the API needs at least one token (PASSFLOW_API_TOKEN)")
        self._tokens = [t.encode() for t in tokens]

    def __call__(self, request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value.strip().encode()
        # Compare with every token, always, so timing tells nothing about which matched.
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(token, given)
        if scheme.lower() != "bearer" or not given or not ok:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
