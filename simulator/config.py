"""Simulator fixtures and fault knobs, loaded from a small TOML file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIG = Path(__file__).with_name("fixtures.toml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TTL(_Model):
    access_token_s: float = 86400
    session_s: float = 1800
    profile_s: float = 30 * 86400
    decision_s: float = 3600
    media_token_s: float = 600


class Limits(_Model):
    preauthorize_resources: int = 5
    authorize_resources: int = 1


class Throttle(_Model):
    enabled: bool = True
    rate_per_s: float = Field(default=1.0, gt=0)
    burst: int = Field(default=10, ge=0)
    # The burst is granted once per client (the page's words); False: it refills (benchmarks).
    one_time_burst: bool = True


class Faults(_Model):
    latency_ms: float = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=503, ge=500, le=599)
    # The enhanced error the failing answers carry (top-level error information, as Adobe Pass
    # answers 5xx); "" sends a bare text body, as a failing gateway in front of it would.
    error_code: str = "internal_server_error"
    # Overrides the code's action (e.g. "retry": the answer says a retry may succeed).
    error_action: str | None = None
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_s: float = Field(default=30.0, ge=0)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    # What a malformed answer holds: not JSON by default; set it to JSON that lacks documented
    # fields (e.g. {"decisions": [{"resource": "REF30"}]}) to test those.
    malformed_body: str = "<html>not json"
    retry_deny_rate: float = Field(default=0.0, ge=0, le=1)
    throttle_rate: float = Field(default=0.0, ge=0, le=1)  # 429 storms


class ServiceProvider(_Model):
    id: str
    name: str
    domains: list[str] = []


class Mvpd(_Model):
    id: str
    displayName: str
    logoUrl: str
    logout_endpoint: bool = False
    # Partner single sign-on (Apple) enabled for this MVPD's integration; off: Adobe answers a
    # partner request with configuration_fallback.
    partner_sso: bool = True
    temppass: Literal["basic", "promotional"] | None = None
    temppass_ttl_s: float = 180
    temppass_max_resources: int = 0
    # A degradation rule the programmer applied (degradation-feature.md): "authn_all" (every
    # user is authenticated and authorized, no login), "authz_all" (every authenticated user
    # is authorized), "authz_none" (every authorization is denied).
    degradation: Literal["authn_all", "authz_all", "authz_none"] | None = None
    # The platforms (X-Device-Info primaryHardwareType) the integration is boarded for; absent:
    # all. The configuration Adobe answers depends on the device asking.
    platforms: list[str] | None = None


class User(_Model):
    mvpd: str
    username: str
    password: str
    attributes: dict[str, Any] = {}


class DenyRule(_Model):
    mvpd: str = "*"
    resource: str
    username: str | None = None
    code: str | None = None
    details: str | None = None


class SimConfig(_Model):
    approved_software_ids: list[str] = ["passflow-demo"]
    # The one lenient reading (simulator.rules), off unless named: the device headers only where
    # the call's own API page marks them required (not the checklist's every request, nor a
    # flow page's), and X-Device-Info's keys as Adobe's own example carries them. No
    # conformance test turns it on.
    lenient_headers: bool = False
    # The service providers each software statement may act for; absent: all of them. A token
    # used for another service provider answers 401 invalid_access_token_service_provider.
    software_service_providers: dict[str, list[str]] = {}
    # The programmer's certificate (public key, PEM) configured in the TVE Dashboard: the
    # attributes listed are then sent encrypted for it ("state": "enc").
    metadata_public_key: str | None = None
    encrypted_attributes: list[str] = ["zip"]
    # The scopes a registration grants (DCR): REST API V2 calls need api:client:v2.
    granted_scopes: list[str] = ["api:client:v2"]
    ttl: TTL = TTL()
    limits: Limits = Limits()
    throttle: Throttle = Throttle()
    faults: Faults = Faults()
    service_providers: list[ServiceProvider] = []
    mvpds: list[Mvpd] = []
    users: list[User] = []
    deny_rules: list[DenyRule] = []

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> SimConfig:
        """Read PATH, else $PASSFLOW_SIM_CONFIG, else the bundled defaults."""
        path = path or os.environ.get("PASSFLOW_SIM_CONFIG") or DEFAULT_CONFIG
        with open(path, "rb") as fh:
            return cls.model_validate(tomllib.load(fh))

    def mvpd(self, mvpd_id: str) -> Mvpd | None:
        return next((m for m in self.mvpds if m.id == mvpd_id), None)

    def service_provider(self, sp_id: str) -> ServiceProvider | None:
        return next((s for s in self.service_providers if s.id == sp_id), None)

    def user(self, mvpd_id: str, username: str) -> User | None:
        return next(
            (u for u in self.users if u.mvpd == mvpd_id and u.username == username), None
        )
