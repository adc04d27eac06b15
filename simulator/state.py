"""The simulator's in-memory world: registered clients, tokens, sessions, profiles, TempPass."""

from __future__ import annotations

import hashlib
import secrets
import string
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.config import SimConfig
from simulator.throttle import TokenBuckets

# The client application (client_id) of the request being answered, set with its bearer token.
# Profiles belong to the client whose session made them: an application that registers again
# loses access to the profiles obtained before (DCR FAQ 9).
CURRENT_CLIENT: ContextVar[str | None] = ContextVar("current_client", default=None)

def encrypt_for(public_key_pem: str, value: Any) -> str:
    """An attribute sealed for the programmer: RSA-OAEP (SHA-256) over its JSON, Base64. (The
    reference leaves the scheme to the certificate; this is the simulator's choice.)"""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_public_key(public_key_pem.encode())
    sealed = key.encrypt(json.dumps(value).encode(), padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    return base64.b64encode(sealed).decode()


CODE_ALPHABET = string.ascii_uppercase + string.digits
CODE_LENGTH = 7  # like "8ER640M" in the Sessions samples


@dataclass
class RegisteredClient:
    client_id: str
    client_secret: str
    software_id: str
    issued_at: float


@dataclass
class AccessToken:
    value: str
    client_id: str
    expires_at: float


@dataclass
class AuthSession:
    code: str
    session_id: str
    service_provider: str
    device_id: str
    device_info: dict[str, Any]
    params: dict[str, str]
    not_before: float
    not_after: float
    completed_mvpd: str | None = None
    client_id: str | None = None  # the client application that created it
    # The single sign-on identities its creation carried: (profile type, user), e.g.
    # ("platformSSO", "amazon:user-1"); a login then also saves a profile for each.
    sso: tuple[tuple[str, str], ...] = ()

    REQUIRED = ("mvpd", "domainName", "redirectUrl")

    @property
    def missing(self) -> list[str]:
        return [p for p in self.REQUIRED if not self.params.get(p)]


@dataclass
class Profile:
    service_provider: str
    device_id: str
    mvpd: str
    not_before: float
    not_after: float
    issuer: str
    type: str
    attributes: dict[str, Any]
    username: str | None = None
    client_id: str | None = None  # None: seeded by a test control, visible to every client
    # The programmer's public key (PEM) when attributes are encrypted for it
    # (user-metadata.md, User Metadata Encryption), and which ones (e.g. zip).
    public_key: str | None = None
    encrypted: frozenset[str] = frozenset()

    def _attribute(self, key: str, value: Any) -> dict[str, Any]:
        if self.public_key is None or key not in self.encrypted:
            return {"value": value, "state": "plain"}
        return {"value": encrypt_for(self.public_key, value), "state": "enc"}

    def visible(self) -> bool:
        return self.client_id is None or self.client_id == CURRENT_CLIENT.get()

    def as_json(self) -> dict[str, Any]:
        return {
            "notBefore": int(self.not_before * 1000),
            "notAfter": int(self.not_after * 1000),
            "issuer": self.issuer,
            "type": self.type,
            "attributes": {k: self._attribute(k, v) for k, v in self.attributes.items()},
        }


@dataclass
class TempPassUse:
    started_at: float
    ttl_s: float
    resources: list[str] = field(default_factory=list)

    @property
    def expires_at(self) -> float:
        return self.started_at + self.ttl_s


class SimState:
    def __init__(self, config: SimConfig):
        self._initial_config = config.model_copy(deep=True)
        self.reset()

    def reset(self, *, keep_registrations: bool = False) -> None:
        """Back to the state at start: no clients, sessions or profiles; fixtures as loaded.

        With keep_registrations, registered clients and their tokens stay valid.
        """
        clients = getattr(self, "clients", {}) if keep_registrations else {}
        tokens = getattr(self, "tokens", {}) if keep_registrations else {}
        self.config = self._initial_config.model_copy(deep=True)
        self.clock_offset = 0.0
        self.throttle = TokenBuckets(
            rate_per_s=self.config.throttle.rate_per_s, burst=self.config.throttle.burst,
            one_time_burst=self.config.throttle.one_time_burst,
            clock=self.now,
        )
        self.clients: dict[str, RegisteredClient] = clients
        self.tokens: dict[str, AccessToken] = tokens
        self.sessions: dict[str, AuthSession] = {}
        self.profiles: dict[tuple[str, str, str], Profile] = {}
        # Single sign-on profiles, by (profile type, user, MVPD): seen by every application
        # (any client, any device) whose requests carry the same identity.
        self.sso_profiles: dict[tuple[str, str, str], Profile] = {}
        self.temppass: dict[tuple[str, str, str], TempPassUse] = {}
        # Partner authentication requests awaiting the partner's response, by request id:
        # (service provider, device, MVPD, client).
        self.partner_requests: dict[str, tuple[str, str, str, str | None]] = {}
        self.stats: Counter[str] = Counter()
        # Software statements whose applications Adobe refuses on REST API V2 calls (the TVE
        # Dashboard disabled them) while DCR still issues their tokens.
        self.disabled_software: set[str] = set()
        # The last calls behind the edge: what each carried (tests read it at /_sim/requests).
        self.requests: deque[dict[str, Any]] = deque(maxlen=5000)

    def now(self) -> float:
        return time.time() + self.clock_offset

    # DCR -------------------------------------------------------------------------------------
    def register_client(self, software_id: str) -> RegisteredClient:
        client = RegisteredClient(
            client_id=secrets.token_urlsafe(12),
            client_secret=secrets.token_urlsafe(24),
            software_id=software_id,
            issued_at=self.now(),
        )
        self.clients[client.client_id] = client
        self.stats["registrations"] += 1
        return client

    def issue_token(self, client: RegisteredClient) -> AccessToken:
        token = AccessToken(
            value=secrets.token_urlsafe(32),
            client_id=client.client_id,
            expires_at=self.now() + self.config.ttl.access_token_s,
        )
        self.tokens[token.value] = token
        self.stats["tokens_issued"] += 1
        return token

    def valid_token(self, value: str) -> AccessToken | None:
        token = self.tokens.get(value)
        if token is None or token.expires_at <= self.now() or token.client_id not in self.clients:
            return None
        if self.clients[token.client_id].software_id in self.disabled_software:
            return None  # the application is disabled: its tokens are issued, and refused
        return token

    def token_covers(self, token: AccessToken, service_provider: str) -> bool:
        """Whether the token's software statement is approved for the service provider."""
        client = self.clients.get(token.client_id)
        if client is None:
            return False
        allowed = self.config.software_service_providers.get(client.software_id)
        return allowed is None or service_provider in allowed

    # Sessions --------------------------------------------------------------------------------
    def new_session(
        self, *, service_provider: str, device_id: str, device_info: dict[str, Any],
        params: dict[str, str],
    ) -> AuthSession:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        while code in self.sessions:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = self.now()
        session = AuthSession(
            code=code, session_id=str(uuid.uuid4()), service_provider=service_provider,
            device_id=device_id, device_info=device_info, params=params,
            not_before=now, not_after=now + self.config.ttl.session_s,
            client_id=CURRENT_CLIENT.get(),
        )
        self.sessions[code] = session
        return session

    def complete_login(self, session: AuthSession, username: str, attributes: dict) -> Profile:
        mvpd = session.params["mvpd"]
        now = self.now()
        profile = Profile(
            service_provider=session.service_provider, device_id=session.device_id, mvpd=mvpd,
            not_before=now, not_after=now + self.config.ttl.profile_s, issuer=mvpd,
            type="regular", attributes=dict(attributes), username=username,
            client_id=session.client_id, public_key=self.config.metadata_public_key,
            encrypted=frozenset(self.config.encrypted_attributes),
        )
        self.profiles[(session.service_provider, session.device_id, mvpd)] = profile
        for kind, user in session.sso:
            self.sso_profiles[(kind, user, mvpd)] = replace(profile, type=kind, client_id=None)
        session.completed_mvpd = mvpd
        self.stats["logins"] += 1
        return profile

    def partner_login(self, service_provider: str, device_id: str, mvpd: str, user: str,
                      client_id: str | None) -> Profile:
        """The profile a partner's authentication response makes (type appleSSO)."""
        now = self.now()
        profile = Profile(
            service_provider=service_provider, device_id=device_id, mvpd=mvpd, not_before=now,
            not_after=now + self.config.ttl.profile_s, issuer="Apple", type="appleSSO",
            attributes={"userID": user, "mvpd": mvpd}, username=user, client_id=client_id)
        self.profiles[(service_provider, device_id, mvpd)] = profile
        self.stats["partner_logins"] += 1
        return profile

    def profile(self, service_provider: str, device_id: str, mvpd: str,
                sso: Iterable[tuple[str, str]] = ()) -> Profile | None:
        """The device's profile for the MVPD, as the requesting client may see it; else a
        single sign-on profile of an identity the request carries, still valid."""
        found = self.profiles.get((service_provider, device_id, mvpd))
        if found is not None and found.visible():
            return found
        now = self.now()
        return next((p for kind, user in sso
                     if (p := self.sso_profiles.get((kind, user, mvpd))) is not None
                     and p.not_after > now), None)

    def sso_profiles_of(self, sso: Iterable[tuple[str, str]]) -> dict[str, Profile]:
        """The valid single sign-on profiles of the identities, by MVPD."""
        now, wanted = self.now(), set(sso)
        return {mvpd: p for (kind, user, mvpd), p in self.sso_profiles.items()
                if (kind, user) in wanted and p.not_after > now}

    def single_logout(self, mvpd: str, sso: Iterable[tuple[str, str]]) -> int:
        """Delete the identities' single sign-on profiles of the MVPD (the single logout
        flow); how many."""
        gone = [key for key in self.sso_profiles
                if key[2] == mvpd and (key[0], key[1]) in set(sso)]
        for key in gone:
            del self.sso_profiles[key]
        return len(gone)

    # TempPass --------------------------------------------------------------------------------
    def temppass_use(self, service_provider: str, mvpd: str, who: str, *, start: bool):
        key = (service_provider, mvpd, who)
        use = self.temppass.get(key)
        if use is None and start:
            cfg = self.config.mvpd(mvpd)
            ttl = cfg.temppass_ttl_s if cfg else 0
            use = self.temppass[key] = TempPassUse(started_at=self.now(), ttl_s=ttl)
        return use

    def temppass_profile(self, mvpd: str, who: str, use: TempPassUse) -> dict[str, Any]:
        cfg = self.config.mvpd(mvpd)
        user_id = "temppass_" + hashlib.sha1(f"{mvpd}:{who}".encode()).hexdigest()
        attributes: dict[str, Any] = {
            "expiration_date": {"value": int(use.expires_at * 1000), "state": "plain"},
            "userID": {"value": user_id, "state": "plain"},
        }
        if cfg and cfg.temppass == "promotional":
            attributes["remaining_resources"] = {
                "value": max(0, cfg.temppass_max_resources - len(use.resources)), "state": "plain"
            }
            attributes["used_assets"] = {"value": list(use.resources), "state": "plain"}
        return {
            "notBefore": int(use.started_at * 1000),
            "notAfter": int(use.expires_at * 1000),
            "issuer": "Adobe",
            "type": "temporary",
            "attributes": attributes,
        }
