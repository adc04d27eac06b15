"""MVPD logos for the provider picker, fetched server side and served from passflow's origin.

Logo URLs come from Adobe's configuration, so from third-party MVPD hosts: every fetch is
treated as hostile. https only; every hop's host resolved and refused when it is private,
loopback, link-local or otherwise not public, or embeds such an address (IPv4-mapped, NAT64,
6to4, Teredo); redirects followed by hand, a few at most; no compression (a gzip bomb is
small on the wire); raster images only (an SVG can carry script); the body read in chunks up to
a byte cap; one deadline over the whole exchange (resolution, connection, headers, body), on
the event loop, so a slow host holds no thread that serves requests.

Known limit: the host is resolved and checked, then fetched by name; a DNS answer that changes
in between (rebinding) is not caught. PASSFLOW_LOGO_TRUSTED_HOSTS lists `host:port` pairs exempt
from the address rule and the https rule (a development simulator on 127.0.0.1); a bare host
means its scheme's default port. A trusted host is trusted only as the first hop, never as the
target of a redirect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

MAX_BYTES = 200_000
MAX_REDIRECTS = 3
DEADLINE_S = 5.0
RASTER = {"image/png", "image/jpeg", "image/gif", "image/webp"}
# IPv6 ranges that carry an IPv4 address inside: refused outright (the embedded address may be
# private, and no MVPD serves logos from them).
_EMBEDDING = [ipaddress.ip_network(n) for n in (
    "64:ff9b::/96", "64:ff9b:1::/48",  # NAT64
    "2002::/16",  # 6to4
    "2001::/32",  # Teredo
)]


class Refused(Exception):
    """The logo cannot be fetched safely (the reason is for logs, not for the page)."""


@dataclass(frozen=True)
class Logo:
    media_type: str
    body: bytes


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def trusted_pairs(trusted_hosts: Iterable[str]) -> set[tuple[str, int | None]]:
    """`host:port` (or `[v6]:port`) entries as pairs; a bare host: (host, None), its URL's
    default port."""
    pairs: set[tuple[str, int | None]] = set()
    for entry in trusted_hosts:
        parts = urlsplit(f"//{entry}")
        if parts.hostname:
            pairs.add((parts.hostname, parts.port))
    return pairs


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a logo may not be fetched from `address`, or None."""
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return refused_address(address.ipv4_mapped)
        if any(address in network for network in _EMBEDDING):
            return f"{address} embeds an IPv4 address (NAT64, 6to4 or Teredo)"
    if not address.is_global or address.is_multicast:
        return f"{address} is not a public address"
    return None


async def _public(host: str) -> None:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                             proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise Refused(f"{host} does not resolve") from exc
    for info in infos:
        problem = refused_address(ipaddress.ip_address(info[4][0]))
        if problem:
            raise Refused(f"{host} resolves to {problem}")


async def fetch(url: str, *, trusted_hosts: Iterable[str] = (),
                client: httpx.AsyncClient | None = None) -> Logo:
    """The logo at `url`, or Refused; at most DEADLINE_S in all."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            return await _fetch(url, trusted_pairs(trusted_hosts), client)
    except TimeoutError:
        raise Refused("deadline passed") from None
    except httpx.HTTPError as exc:
        raise Refused(type(exc).__name__) from exc


async def _fetch(url: str, trusted: set[tuple[str, int | None]],
                 client: httpx.AsyncClient | None) -> Logo:
    owned = client is None
    http = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
    try:
        for hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or _default_port(parts.scheme)
            first_hop_trusted = hop == 0 and (
                (host, port) in trusted
                or ((host, None) in trusted and port == _default_port(parts.scheme)))
            if not first_hop_trusted:
                if parts.scheme != "https":
                    raise Refused(f"{parts.scheme or 'no'} scheme: https only")
                await _public(host)
            async with http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as answer:
                if answer.is_redirect:
                    url = urljoin(url, answer.headers.get("location", ""))
                    continue
                if answer.status_code != 200:
                    raise Refused(f"HTTP {answer.status_code}")
                encoding = answer.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise Refused(f"compressed ({encoding}) though asked not to be")
                media_type = answer.headers.get("content-type", "").split(";")[0].strip()
                if media_type not in RASTER:
                    raise Refused(f"{media_type or 'no type'} is not a raster image")
                body = bytearray()
                async for chunk in answer.aiter_raw():
                    body.extend(chunk)
                    if len(body) > MAX_BYTES:
                        raise Refused(f"larger than {MAX_BYTES} bytes")
                return Logo(media_type, bytes(body))
        raise Refused("too many redirects")
    finally:
        if owned:
            await http.aclose()
