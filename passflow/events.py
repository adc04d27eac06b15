"""The events the streaming platform's backend sends (docs/api.md, "Events")."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from passflow import device_info, flows
from passflow.crypto import Cipher
from passflow.flows import FLOWS, EventType

_ID = {"min_length": 1, "max_length": 200}


# The fields each type needs beyond event_id, type and device (docs/api.md, the events table).
REQUIRED: dict[EventType, tuple[str, ...]] = {kind: flow.required for kind, flow in FLOWS.items()}


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


_TOKEN = {"default": None, "min_length": 1, "max_length": 8192}
ACCESS_STATUSES = ("granted", "denied", "restricted", "notDetermined")


def partner_status_problems(status: Any) -> list[str]:
    """What AP-Partner-Framework-Status's page requires and `status` lacks (its header page:
    frameworkPermissionInfo.accessStatus one of four values, frameworkProviderInfo.id, and
    frameworkProviderInfo.expirationDate as milliseconds in a string)."""
    if not isinstance(status, dict):
        return ["must be a JSON object"]
    problems = []
    permission = status.get("frameworkPermissionInfo")
    if not isinstance(permission, dict) or permission.get("accessStatus") not in ACCESS_STATUSES:
        problems.append("frameworkPermissionInfo.accessStatus must be one of "
                        + ", ".join(ACCESS_STATUSES))
    provider = status.get("frameworkProviderInfo")
    if not isinstance(provider, dict) or not isinstance(provider.get("id"), str) \
            or not provider["id"]:
        problems.append("frameworkProviderInfo.id is required")
    expiration = provider.get("expirationDate") if isinstance(provider, dict) else None
    if not (isinstance(expiration, str) and expiration.isdigit()):
        problems.append("frameworkProviderInfo.expirationDate is required: milliseconds since "
                        "the epoch, as a string")
    return problems


class SsoIn(BaseModel):
    """What the device's platform gave it for single sign-on (docs/api.md): sent as the headers
    the single sign-on pages name, stored sealed."""

    model_config = ConfigDict(extra="forbid")

    subject_token: str | None = Field(**_TOKEN)  # Adobe-Subject-Token (Amazon)
    roku_connect_token: str | None = Field(**_TOKEN)  # X-Roku-Reserved-Roku-Connect-Token
    service_token: str | None = Field(**_TOKEN)  # AD-Service-Token
    partner_framework_status: dict[str, Any] | None = None  # AP-Partner-Framework-Status

    @field_validator("subject_token", "roku_connect_token", "service_token")
    @classmethod
    def _header_safe(cls, value: str | None) -> str | None:
        if value is not None and (not value.isascii() or any(
                ord(ch) < 33 or ord(ch) == 127 for ch in value)):
            raise ValueError("must be a token: printable ASCII, no spaces")
        return value

    @field_validator("partner_framework_status")
    @classmethod
    def _partner_status(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            if len(repr(value)) > 4000:
                raise ValueError("is too large")
            problems = partner_status_problems(value)
            if problems:
                raise ValueError("; ".join(problems))
        return value


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(**_ID)
    ip: str | None = Field(default=None, max_length=64)
    port: int | None = Field(default=None, ge=1, le=65535)
    info: dict[str, Any] = {}
    # The device's own User-Agent and Experience Cloud ID (AP-Visitor-Identifier), sent on its
    # calls when given.
    user_agent: str | None = Field(default=None, max_length=500)
    visitor_id: str | None = Field(default=None, max_length=200)
    sso: SsoIn | None = None
    _warnings: list[str] = PrivateAttr(default_factory=list)

    _check_id = field_validator("id", "user_agent", "visitor_id")(
        lambda v: v if v is None else _no_control_chars(v))

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ip_address(value)  # ValueError -> 422
        return value

    @field_validator("info")
    @classmethod
    def _info(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(repr(value)) > 4000:
            raise ValueError("device info is too large")
        return value

    @model_validator(mode="after")
    def _reaches_adobe_pass(self, context: ValidationInfo) -> DeviceIn:
        """Every event type reaches Adobe Pass: the device must be describable to it. Device
        info that departs from Adobe's table is sent as it is, with warnings."""
        refused = device_info.unsendable(self.info, self.user_agent)
        if refused:
            raise ValueError("; ".join(refused))
        self._warnings = [f"device.info: {problem}" for problem in
                          device_info.problems(self.info)] if self.info else []
        if self.ip is not None and self.port is None:
            self._warnings.append(
                "device.port is missing: the server-to-server cookbook asks for the device's "
                "source port (sent as connectionPort), which home-based authentication uses")
        shared = bool((context.context or {}).get("devices_share_address"))
        if self.ip is None and not shared:
            raise ValueError("device.ip is required: Adobe Pass throttles each device by its "
                             "address (set PASSFLOW_DEVICES_SHARE_ADDRESS=true if devices are "
                             "sent without one; they are then throttled together)")
        return self


def _well_formed(value: Any, where: str, depth: int = 0) -> None:
    if depth > 20:
        return  # nesting is bounded elsewhere (a 422 of its own)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} holds a lone surrogate: not text") from None
    elif isinstance(value, dict):
        for key, item in value.items():  # (a key is never echoed: it may be the culprit)
            _well_formed(key, where, depth + 1)
            _well_formed(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _well_formed(item, where, depth + 1)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(**_ID)
    type: EventType
    service_provider: str | None = Field(default=None, **_ID)
    device: DeviceIn
    mvpd: str | None = Field(default=None, **_ID)
    resource: str | None = Field(default=None, min_length=1, max_length=500)
    resources: list[str] | None = Field(default=None, min_length=1, max_length=100)
    redirect_url: str | None = Field(default=None, max_length=2000)
    domain_name: str | None = Field(default=None, max_length=255)
    # Promotional TempPass: the user identity sent as AP-TempPass-Identity.
    temppass_identity: dict[str, Any] | str | None = None
    # Partner single sign-on: the partner (e.g. Apple), and the SAML response its framework
    # returned (stored sealed).
    partner: str | None = Field(default=None, min_length=1, max_length=100)
    partner_response: str | None = Field(default=None, min_length=1, max_length=60_000)
    # Where the user logs in. "secondary": polling starts with the session (a code on the TV);
    # "primary": the device opens the URL itself, polling starts when the user reaches
    # redirect_url (checklist), reported by GET /landing or POST /v1/jobs/{id}/landed.
    screen: Literal["primary", "secondary"] = "secondary"

    _check_ids = field_validator("event_id", "mvpd", "resource", "partner")(
        lambda v: v if v is None else _no_control_chars(v))

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        """Every string is text (JSON can carry a lone surrogate, which no database or header
        takes): refused here, never accepted to fail later."""
        _well_formed(value, "event")
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for item in value:
                if not item or len(item) > 500:
                    raise ValueError("each resource must be 1 to 500 characters")
                _no_control_chars(item)
        return value

    @field_validator("redirect_url")
    @classmethod
    def _redirect(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @property
    def warnings(self) -> list[str]:
        """What was accepted though Adobe's pages would have it otherwise."""
        return list(self.device._warnings)

    @model_validator(mode="after")
    def _type_needs(self) -> EventIn:
        missing = [name for name in REQUIRED[self.type] if _value(self, name) in (None, [])]
        if missing:
            raise ValueError(f"{self.type} needs: {', '.join(missing)}")
        return self


def _value(event: BaseModel, path: str) -> Any:
    """A field of the event by its dotted path (device.sso.partner_framework_status)."""
    value: Any = event
    for part in path.split("."):
        value = getattr(value, part, None)
    return value


def stored_payload(event: EventIn, cipher: Cipher | None) -> dict[str, Any]:
    """The event as stored: its flow's sealed fields (passflow.flows) encrypted like profiles
    are."""
    return flows.seal(FLOWS[event.type], event.model_dump(mode="json"), cipher)


def needs_cipher(event: EventIn) -> bool:
    """Whether storing the event needs the key (it carries a field its flow seals)."""
    return flows.has_sealed_values(FLOWS[event.type], event.model_dump(mode="json"))


def temppass_identity(payload: dict[str, Any], cipher: Cipher) -> dict[str, Any] | str | None:
    return flows.opened(payload, "temppass_identity", cipher)
