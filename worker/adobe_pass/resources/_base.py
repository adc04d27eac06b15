from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from worker.adobe_pass._client import AdobePass


def seg(value: str) -> str:
    """A path segment, percent-encoded (an MVPD or resource id may hold any character)."""
    return quote(value, safe="")


class Resource:
    def __init__(self, client: AdobePass):
        self._client = client
