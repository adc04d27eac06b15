"""What X-Device-Info should hold (rest-api-v2/appendix/headers/rest-api-v2-appendix-headers-
x-device-info.md): the keys the page marks required, and the values of the restricted keys.

Adobe's own pages do not keep to it (their first sample has no connectionType; the Roku recipe
sends osName "Roku" and connectionType "WifiConnection"), and Adobe Pass fills in what it can
from the request: an event whose device info departs from the table is accepted, and the
departures come back as warnings (in the answer and the log), never silently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REQUIRED_KEYS = ("model", "version", "osName", "osVersion", "connectionType")

RESTRICTED: dict[str, frozenset[Any]] = {
    "primaryHardwareType": frozenset({
        "Camera", "DataCollectionTerminal", "Desktop", "EmbeddedNetworkModule", "eReader",
        "GamesConsole", "GeolocationTracker", "Glasses", "MediaPlayer", "MobilePhone",
        "PaymentTerminal", "PluginModem", "SetTopBox", "TV", "Tablet", "WirelessHotspot",
        "Wristwatch", "Unknown"}),
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
    "connectionSecure": frozenset({True, False, "true", "false"}),
}


def _one_of(value: Any, allowed: frozenset[Any]) -> bool:
    """Whether `value` is one of `allowed`, by type as well as by value: a list is never one
    (nor hashable), and 1 is not True."""
    return isinstance(value, str | bool) and value in allowed


def problems(info: Mapping[str, Any]) -> list[str]:
    """Where `info` departs from the X-Device-Info table, in words; empty when it does not."""
    found = [f"{key} is missing (the X-Device-Info header page marks it required)"
             for key in REQUIRED_KEYS if info.get(key) in (None, "")]
    for key, allowed in RESTRICTED.items():
        if key in info and not _one_of(info[key], allowed):
            shown = ", ".join(sorted(str(value) for value in allowed if not isinstance(
                value, bool)))
            found.append(f"{key}={info[key]!r} is not one of: {shown}")
    return found
