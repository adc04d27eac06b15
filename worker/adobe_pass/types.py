"""Request and response models of Adobe Pass DCR and REST API V2, as the reference pages define.

Timestamps arrive as numbers or as strings of milliseconds ("notBefore": "1733735289035" in the
Sessions samples, numbers in Profiles); `Millis` accepts both.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


def _millis(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


Millis = Annotated[int, BeforeValidator(_millis)]


class _Model(BaseModel):
    # Unknown fields are kept, not rejected: Adobe adds attributes over time.
    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)


class EnhancedError(_Model):
    """Enhanced Error Codes object, top-level or item-level."""

    action: str = "none"
    status: int | None = None
    code: str | None = None
    message: str | None = None
    details: str | None = None
    help_url: str | None = None
    trace: str | None = None


# DCR ------------------------------------------------------------------------------------------

class ClientCredentials(BaseModel):
    model_config = ConfigDict(extra="allow")

    client_id: str
    client_secret: str
    client_id_issued_at: int | None = None
    redirect_uris: list[str] = []
    grant_types: list[str] = []
    scopes: list[str] = []


class AccessToken(BaseModel):
    model_config = ConfigDict(extra="allow")

    access_token: str
    expires_in: float
    token_type: str = "bearer"
    created_at: Millis | None = None  # milliseconds
    id: str | None = None

    def expires_at(self, received_at: float) -> float:
        """Epoch seconds at which the token expires, counted from when we received it."""
        return received_at + self.expires_in


# Configuration ---------------------------------------------------------------------------------

class MvpdInfo(_Model):
    id: str
    display_name: str | None = None
    logo_url: str | None = None
    is_temp_pass: bool = False
    is_proxy: bool | None = None


class Requestor(_Model):
    id: str
    name: str | None = None
    domains: list[Any] = []
    mvpds: list[MvpdInfo] = []


class Configuration(_Model):
    device: str | None = None
    client_type: str | None = None
    requestor: Requestor
    # The attribute table puts `mvpds` at the top level; the sample nests it in `requestor`.
    top_level_mvpds: list[MvpdInfo] = Field(default=[], validation_alias="mvpds")

    @property
    def mvpds(self) -> list[MvpdInfo]:
        return self.requestor.mvpds or self.top_level_mvpds

    def mvpd(self, mvpd_id: str) -> MvpdInfo | None:
        return next((m for m in self.mvpds if m.id == mvpd_id), None)

    @property
    def first_domain(self) -> str | None:
        """The programmer's first domain (sessions' domainName)."""
        domains = self.requestor.domains
        if not domains:
            return None
        first = domains[0]
        return first.get("name") if isinstance(first, dict) else str(first)


# Sessions --------------------------------------------------------------------------------------

class SessionAction(_Model):
    """Answer of create and resume authentication session."""

    action_name: str
    action_type: str
    reason_type: str = "none"
    missing_parameters: list[str] = []
    url: str | None = None
    code: str | None = None
    session_id: str | None = None
    mvpd: str | None = None
    service_provider: str | None = None
    not_before: Millis | None = None
    not_after: Millis | None = None


class PartnerRequest(_Model):
    """Adobe's partner authentication request (SAML), handed to the partner framework."""

    type: str
    request: str
    attributes_names: list[str] = []


class PartnerAction(SessionAction):
    """Answer of retrieve partner authentication request: `partner_profile` with the request
    for the partner framework, or a fallback to the basic flow (a session answer and its
    `reasonType`)."""

    authentication_request: PartnerRequest | None = None


class SessionInfo(_Model):
    """Answer of retrieve authentication session using code."""

    existing_parameters: dict[str, Any] = {}
    missing_parameters: list[str] = []
    device: dict[str, Any] | None = None
    not_before: Millis | None = None
    not_after: Millis | None = None

    @property
    def mvpd(self) -> str | None:
        value = self.existing_parameters.get("mvpd")
        return value if isinstance(value, str) and value else None


# Profiles --------------------------------------------------------------------------------------

class ProfileAttribute(_Model):
    value: Any = None
    state: str = "plain"


class Profile(_Model):
    mvpd: str = ""  # the key of the profiles map
    not_before: Millis
    not_after: Millis
    issuer: str | None = None
    type: str | None = None
    attributes: dict[str, ProfileAttribute] = {}

    @model_validator(mode="before")
    @classmethod
    def _wrap_plain_attributes(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
            data = dict(data)
            data["attributes"] = {
                k: v if isinstance(v, dict) and "value" in v else {"value": v, "state": "plain"}
                for k, v in data["attributes"].items()
            }
        return data


class Profiles(_Model):
    profiles: dict[str, Profile] = {}

    @model_validator(mode="after")
    def _name_profiles(self) -> Profiles:
        for mvpd, profile in self.profiles.items():
            profile.mvpd = mvpd
        return self

    def __iter__(self):  # type: ignore[override]
        return iter(self.profiles.values())

    def __len__(self) -> int:
        return len(self.profiles)

    def get(self, mvpd: str) -> Profile | None:
        return self.profiles.get(mvpd)


# Decisions -------------------------------------------------------------------------------------

class MediaToken(_Model):
    not_before: Millis | None = None
    not_after: Millis | None = None
    serialized_token: str


class Decision(_Model):
    resource: str
    service_provider: str | None = None
    mvpd: str | None = None
    authorized: bool
    source: str | None = None
    token: MediaToken | None = None
    not_before: Millis | None = None
    not_after: Millis | None = None
    error: EnhancedError | None = None

    @property
    def decision(self) -> Literal["Permit", "Deny"]:
        return "Permit" if self.authorized else "Deny"


class Decisions(_Model):
    decisions: list[Decision]


# Logout ----------------------------------------------------------------------------------------

class LogoutAction(_Model):
    action_name: str
    action_type: str
    mvpd: str | None = None
    url: str | None = None


class Logouts(_Model):
    logouts: dict[str, LogoutAction] = {}

    @model_validator(mode="after")
    def _name_logouts(self) -> Logouts:
        for mvpd, action in self.logouts.items():
            action.mvpd = action.mvpd or mvpd
        return self


__all__ = [
    "AccessToken", "ClientCredentials", "Configuration", "Decision", "Decisions",
    "EnhancedError", "LogoutAction", "Logouts", "MediaToken", "MvpdInfo", "Profile",
    "ProfileAttribute", "Profiles", "Requestor", "SessionAction", "SessionInfo",
]
