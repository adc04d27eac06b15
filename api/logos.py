"""MVPD logos for the provider picker, fetched server side and served from passflow's origin.

Logo URLs come from Adobe's configuration, so from third-party MVPD hosts: every fetch is
treated as hostile. https only; every hop's host resolved and refused when it is private,
loopback, link-local or otherwise not public (redirects followed by hand, a few at most); the
body read in chunks up to a byte cap within one overall deadline; raster images only (an SVG
can carry script); one fetch per logo at a time (a lock in Redis), successes cached a day and
failures a minute. The answer carries `Content-Security-Policy: default-src 'none'` and
`nosniff`.

Known limit: the host is resolved and checked, then fetched by name; a DNS answer that changes
in between (rebinding) is not caught. PASSFLOW_LOGO_TRUSTED_HOSTS lists hosts exempt from the
address rule and the https rule (a development simulator on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

MAX_BYTES = 200_000
MAX_REDIRECTS = 3
DEADLINE_S = 5.0
RASTER = {"image/png", "image/jpeg", "image/gif", "image/webp"}


class Refused(Exception):
    """The logo cannot be fetched safely (the reason is for logs, not for the page)."""


@dataclass(frozen=True)
class Logo:
    media_type: str
    body: bytes


def _public(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise Refused(f"{host} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise Refused(f"{host} resolves to {address}, not a public address")


def fetch(url: str, *, trusted_hosts: Iterable[str] = (),
          client: httpx.Client | None = None) -> Logo:
    """The logo at `url`, or Refused."""
    trusted = set(trusted_hosts)
    deadline = time.monotonic() + DEADLINE_S
    owned = client is None
    http = client or httpx.Client(follow_redirects=False)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            host = parts.hostname or ""
            if host not in trusted:
                if parts.scheme != "https":
                    raise Refused(f"{parts.scheme or 'no'} scheme: https only")
                _public(host)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Refused("deadline passed")
            with http.stream("GET", url, timeout=httpx.Timeout(min(left, 3.0))) as answer:
                if answer.is_redirect:
                    url = urljoin(url, answer.headers.get("location", ""))
                    continue
                if answer.status_code != 200:
                    raise Refused(f"HTTP {answer.status_code}")
                media_type = answer.headers.get("content-type", "").split(";")[0].strip()
                if media_type not in RASTER:
                    raise Refused(f"{media_type or 'no type'} is not a raster image")
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_BYTES:
                        raise Refused(f"larger than {MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise Refused("deadline passed")
                return Logo(media_type, bytes(body))
        raise Refused("too many redirects")
    except httpx.HTTPError as exc:
        raise Refused(type(exc).__name__) from exc
    finally:
        if owned:
            http.close()
