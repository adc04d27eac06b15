"""Whose address a request is from behind proxies (api.forwarded), without sockets of its own:
the middleware in front of an app that echoes what it was given."""

from __future__ import annotations

import asyncio

import pytest

from api.forwarded import TrustedProxies


def _client(trusted: list[str], peer: str, forwarded: str | None = None,
            proto: str | None = None) -> tuple[str, str]:
    seen = {}

    async def app(scope, receive, send):
        seen["client"], seen["scheme"] = scope["client"][0], scope["scheme"]

    headers = []
    if forwarded is not None:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto.encode()))
    scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
    asyncio.run(TrustedProxies(app, trusted=trusted)(scope, None, None))
    return seen["client"], seen["scheme"]


def test_no_trusted_proxy_believes_no_header():
    assert _client([], "198.51.100.7", "203.0.113.1") == ("198.51.100.7", "http")


def test_a_listed_proxy_is_believed_from_the_right():
    # The client wrote "1.1.1.1" itself; the proxy appended the address it saw.
    assert _client(["10.0.0.0/8"], "10.0.0.5", "1.1.1.1, 203.0.113.9", "https") == (
        "203.0.113.9", "https")
    # Two trusted hops: the first address that is not a trusted proxy.
    assert _client(["10.0.0.0/8"], "10.0.0.5", "6.6.6.6, 203.0.113.9, 10.0.0.7")[0] == \
        "203.0.113.9"


def test_an_unlisted_peer_is_not_believed():
    assert _client(["10.0.0.0/8"], "198.51.100.7", "203.0.113.1")[0] == "198.51.100.7"


@pytest.mark.parametrize("forged", ["1.2.3.4", "1.2.3.4, 5.6.7.8"])
def test_any_peer_means_the_nearest_hop_never_the_leftmost(forged):
    """`*`: the nearest hop's view is the last address; what the client wrote comes first."""
    assert _client(["*"], "10.0.0.5", f"{forged}, 203.0.113.9")[0] == "203.0.113.9"


def test_ipv4_mapped_addresses_are_the_ipv4_they_map():
    assert _client(["::ffff:10.0.0.0/104"], "::ffff:10.0.0.5", "::ffff:198.51.100.1")[0] == \
        "198.51.100.1"
    assert _client(["10.0.0.0/8"], "::ffff:10.0.0.5", "203.0.113.9")[0] == "203.0.113.9"
