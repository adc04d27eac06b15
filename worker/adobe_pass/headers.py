"""Builders of the request headers REST API V2 defines (rest-api-v2/appendix/headers/).

A server calls on behalf of a device, so every value describes the device, not the server
(checklist: "Even when the request originates from a server on behalf of a device, the
AP-Device-Identifier header value must reflect the actual streaming device identifier").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from passflow.device_info import is_browser
from worker.adobe_pass._exceptions import DeviceNotDescribable


def _b64(raw: str | bytes) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode("ascii")


def _b64_json(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True)
class Device:
    """The streaming device a call is made for."""

    id: str
    ip: str | None = None
    port: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    visitor_id: str | None = None  # ECID, for AP-Visitor-Identifier
    user_agent: str | None = None  # the device's own, sent as User-Agent
    # Single sign-on, as the event's device.sso gave it: subject_token, roku_connect_token,
    # service_token, partner_framework_status (a dict).
    sso: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a device needs its stable identifier")


def device_identifier(device_id: str) -> str:
    """AP-Device-Identifier: `fingerprint <Base64 of the stable device id>`."""
    return f"fingerprint {_b64(device_id)}"


def device_info(info: Mapping[str, Any], *, ip: str | None = None, port: int | None = None) -> str:
    """X-Device-Info: Base64 of the device information JSON.

    The device's IP and port go in as connectionIp/connectionPort unless the info already has
    them: Adobe needs them for features such as home-based authentication (checklist).
    """
    payload = dict(info)
    if ip and "connectionIp" not in payload:
        payload["connectionIp"] = ip
    if port is not None and "connectionPort" not in payload:
        payload["connectionPort"] = port
    return _b64_json(payload)


def temppass_identity(identity: Mapping[str, Any] | str) -> str:
    """AP-TempPass-Identity: Base64 of the user identity information (promotional TempPass)."""
    if isinstance(identity, str):
        return _b64(identity)
    return _b64_json(identity)


def partner_framework_status(status: Mapping[str, Any]) -> str:
    """AP-Partner-Framework-Status: Base64 of the partner framework status JSON (checked at
    intake against the header page's required attributes)."""
    return _b64_json(status)


# The single sign-on headers, by the device.sso key that carries each (appendix/headers).
SSO_HEADERS = {
    "subject_token": "Adobe-Subject-Token",
    "roku_connect_token": "X-Roku-Reserved-Roku-Connect-Token",
    "service_token": "AD-Service-Token",
}


def device_headers(device: Device, *, sso: bool = False, partner: bool = False) -> dict[str, str]:
    """Every header the device carries on a REST API V2 call, built here only.

    The union of Adobe's pages (docs/checklist.md, "the union rule"): the checklist sends
    AP-Device-Identifier and X-Device-Info on *every* REST API V2 request (items 17 and 18),
    so they go on every call, the look-ups by code included, though those API pages list
    neither. A browser may leave X-Device-Info out (its page, "Browsers"): its User-Agent
    stands for it. `sso`: the call's page lists the single sign-on headers (sessions create,
    profiles, decisions, logout); `partner`: it lists AP-Partner-Framework-Status (profiles,
    decisions, the partner endpoints). A header no page names for a call stays off it."""
    headers: dict[str, str] = {}
    if sso:
        headers.update({name: device.sso[key] for key, name in SSO_HEADERS.items()
                        if device.sso.get(key)})
    if partner and device.sso.get("partner_framework_status"):
        headers["AP-Partner-Framework-Status"] = partner_framework_status(
            device.sso["partner_framework_status"])
    headers["AP-Device-Identifier"] = device_identifier(device.id)
    if device.info:
        headers["X-Device-Info"] = device_info(device.info, ip=device.ip, port=device.port)
    elif not is_browser(device.user_agent):
        # Intake refuses such a device (passflow.events); nothing may reach Adobe without it.
        raise DeviceNotDescribable(
            "the device's info is empty and it is not a browser: Adobe Pass refuses every call "
            "without X-Device-Info; send the event again with device.info")
    if device.ip:
        # Without it every device shares the server's throttling bucket at Adobe.
        headers["X-Forwarded-For"] = device.ip
    if device.visitor_id:
        headers["AP-Visitor-Identifier"] = device.visitor_id
    if device.user_agent:
        headers["User-Agent"] = device.user_agent
    return headers
