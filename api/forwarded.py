"""Whose address a request is from, behind proxies (PASSFLOW_TRUSTED_PROXIES).

Only a peer listed as a trusted proxy is believed, and only as far as the chain of trusted
proxies goes: X-Forwarded-For is read from the right (each proxy appends the address it saw),
and the first address that is not a trusted proxy is the client. With "*" (any peer is a
proxy) only the nearest hop is believed: the client is the last address it wrote, never the
leftmost, which the client itself may have written. An IPv4-mapped address is the IPv4
address it maps. The peer's X-Forwarded-Proto (its last value) gives the scheme.
"""

from __future__ import annotations

from typing import Any

from api.limits import App, Receive, Scope, Send
from passflow.serving import client_address, networks


class TrustedProxies:
    def __init__(self, app: App, *, trusted: list[str]):
        self.app = app
        self.any_peer = "*" in trusted
        self.networks = networks([item for item in trusted if item != "*"])

    def _trusted(self, raw: str) -> bool:
        address = client_address(raw.strip())
        return address is not None and any(address in net for net in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (self.any_peer or self.networks):
            peer = scope.get("client")
            if peer and (self.any_peer or self._trusted(peer[0])):
                scope = self._rewritten(scope, peer)
        await self.app(scope, receive, send)

    def _rewritten(self, scope: Scope, peer: Any) -> Scope:
        forwarded: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
        scope = dict(scope)
        if proto in ("http", "https"):
            scope["scheme"] = proto
        if not forwarded:
            return scope
        if self.any_peer:
            client = forwarded[-1]
        else:
            client = next((h for h in reversed(forwarded) if not self._trusted(h)), forwarded[0])
        address = client_address(client)
        if address is not None:
            scope["client"] = (str(address), 0)
        return scope
