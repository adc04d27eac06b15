"""Parsing and checking of the request headers Adobe Pass defines.

Sources: rest-api-v2/appendix/headers/*.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

# Keys whose values are restricted to a finite set (X-Device-Info directives table).
RESTRICTED: dict[str, frozenset[str]] = {
    "primaryHardwareType": frozenset({
        "Camera", "DataCollectionTerminal", "Desktop", "EmbeddedNetworkModule", "eReader",
        "GamesConsole", "GeolocationTracker", "Glasses", "MediaPlayer", "MobilePhone",
        "PaymentTerminal", "PluginModem", "SetTopBox", "TV", "Tablet", "WirelessHotspot",
        "Wristwatch", "Unknown"}),
    # The page's list only: its own Roku OS recipe sends "Roku", which the list lacks (the
    # strict reading: refused).
    "osName": frozenset({
        "Android", "Chrome OS", "Linux", "Mac OS", "OS X", "OpenBSD", "Roku OS", "Windows",
        "iOS", "tvOS", "webOS"}),
    "osFamily": frozenset({
        "Android", "BSD", "Linux", "PlayStation OS", "Roku OS", "Symbian", "Tizen", "Windows",
        "iOS", "tvOS", "macOS", "webOS"}),
    "osVendor": frozenset({
        "Amazon", "Apple", "Google", "LG", "Microsoft", "Mozilla", "Nintendo", "Nokia", "Roku",
        "Samsung", "Sony", "Tizen Project"}),
    "browserName": frozenset({
        "Android Browser", "Chrome", "Edge", "Firefox", "Internet Explorer", "Opera", "Safari",
        "SeaMonkey", "Symbian Browser"}),
    "browserVendor": frozenset({
        "Amazon", "Apple", "Google", "Microsoft", "Motorola", "Mozilla", "Netscape", "Nintendo",
        "Nokia", "Samsung", "Sony Ericsson"}),
}
# The keys the directives table marks required (its own example leaves connectionType out: the
# strict reading requires it all the same); the lenient switch asks only the example's.
REQUIRED_DEVICE_INFO_KEYS = ("model", "version", "osName", "osVersion", "connectionType")
SAMPLE_DEVICE_INFO_KEYS = ("model", "version", "osName", "osVersion")


def _b64decode(value: str) -> bytes:
    value = value.strip()
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return base64.urlsafe_b64decode(padded)


def parse_device_identifier(value: str | None) -> str | None:
    """`fingerprint <base64 id>` -> the id, or None when the header is absent or malformed."""
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0] != "fingerprint":
        return None
    try:
        decoded = _b64decode(parts[1]).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return decoded or None


def parse_device_info(value: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Decode X-Device-Info; returns (info, problems). info is None when it cannot be read.

    Problems are a malformed value or a restricted key outside its set; the required keys that
    are missing are reported by `missing_device_info_keys`.
    """
    try:
        info = json.loads(_b64decode(value))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None, ["X-Device-Info is not Base64-encoded JSON"]
    if not isinstance(info, dict):
        return None, ["X-Device-Info must encode a JSON object"]
    problems = [
        f"{key}={info[key]!r} is not one of the allowed values"
        for key, allowed in RESTRICTED.items()
        # A list or an object is never an allowed value (nor hashable).
        if key in info and not (isinstance(info[key], str | bool) and info[key] in allowed)
    ]
    return info, problems


def missing_device_info_keys(info: dict[str, Any], *, lenient: bool = False) -> list[str]:
    keys = SAMPLE_DEVICE_INFO_KEYS if lenient else REQUIRED_DEVICE_INFO_KEYS
    return [k for k in keys if info.get(k) in (None, "")]


def client_identity(x_forwarded_for: str | None, peer: str | None) -> str:
    """Adobe keys throttling on the first X-Forwarded-For address (throttling-mechanism.md)."""
    if x_forwarded_for:
        first = x_forwarded_for.split(",")[0].strip()
        if first:
            return first
    return peer or "unknown"
