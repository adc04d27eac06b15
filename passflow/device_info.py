"""What X-Device-Info should hold (rest-api-v2/appendix/headers/rest-api-v2-appendix-headers-
x-device-info.md): the keys the page marks required, and the values of the restricted keys.

Adobe's own pages do not keep to it (their first sample has no connectionType; the Roku recipe
sends osName "Roku"): an event whose device info departs from the table so far is accepted, and
the departures come back as warnings (in the answer and the log), never silently, since an Adobe
Pass that keeps to the table refuses such calls. What not even Adobe's sample lacks
(`SAMPLE_KEYS`) is refused at intake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REQUIRED_KEYS = ("model", "version", "osName", "osVersion", "connectionType")
# What Adobe's own sample on that page carries of them: without these a device cannot be
# described to Adobe Pass at all, so an event lacking one is refused (docs/api.md).
SAMPLE_KEYS = ("model", "osName", "osVersion")

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


def is_browser(user_agent: str | None) -> bool:
    """Whether a User-Agent is a web browser's, which may stand in for X-Device-Info (its page,
    "Browsers": "the browser will automatically send a minimal set of required information in
    the User-Agent header"). Every current browser's begins `Mozilla/5.0 (<platform>`."""
    return bool(user_agent) and user_agent.startswith("Mozilla/5.0 (")


def unsendable(info: Mapping[str, Any], user_agent: str | None) -> list[str]:
    """Why `info` cannot be sent as X-Device-Info for a device: empty, or lacking a key of
    Adobe's own sample. A browser may send none (its User-Agent stands for it)."""
    if not info:
        return [] if is_browser(user_agent) else [
            "device.info is empty: Adobe Pass needs X-Device-Info on every call (checklist "
            "item 18); send at least " + ", ".join(SAMPLE_KEYS) + ", or the browser's own "
            "device.user_agent"]
    return [f"device.info.{key} is required (X-Device-Info: Adobe Pass refuses a call without "
            "it)" for key in SAMPLE_KEYS if info.get(key) in (None, "")]


def problems(info: Mapping[str, Any]) -> list[str]:
    """Where `info` departs from the X-Device-Info table, in words; empty when it does not."""
    found = [f"{key} is missing (the X-Device-Info header page marks it required: an Adobe "
             "Pass that keeps to the page refuses every call without it)"
             for key in REQUIRED_KEYS if info.get(key) in (None, "")]
    for key, allowed in RESTRICTED.items():
        if key in info and not _one_of(info[key], allowed):
            shown = ", ".join(sorted(str(value) for value in allowed if not isinstance(
                value, bool)))
            found.append(f"{key}={info[key]!r} is not one of: {shown}")
    return found
