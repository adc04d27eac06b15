"""All configuration, from PASSFLOW_* environment variables or a .env file (docs/api.md,
"Configuration")."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_address, ip_network
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from passflow.strength import weakness

# Adobe Pass environments by name (checklist, Lifecycle Testing: Prequal-Production and
# Release-Staging before Release-Production). Release hosts are those the reference pages show
# (sp.auth.adobe.com in its samples, sp.auth-staging.adobe.com for its test tool); the prequal
# hosts are those of Adobe's tech note "Setting up your environment and testing in Pre-Qual"
# (sp-prequal.auth.adobe.com; its staging profile differs only by the auth-staging domain).
ENVIRONMENTS = {
    "production": "https://sp.auth.adobe.com",
    "staging": "https://sp.auth-staging.adobe.com",
    "prequal": "https://sp-prequal.auth.adobe.com",
    "prequal-staging": "https://sp-prequal.auth-staging.adobe.com",
}


# Where the pages are said to be before any `passflow api` has said where it listens.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


_MAKE_ONE = "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


def _strong(value: SecretStr | None, what: str, remedy: str, *,
            first_of_list: bool = False) -> SecretStr | None:
    """`value` when strong enough (passflow.strength), else a ValueError saying why and how to
    get one, never the value."""
    if value is not None and value.get_secret_value():
        secret = value.get_secret_value()
        problem = weakness(secret.split(",")[0] if first_of_list else secret)
        if problem:
            raise ValueError(f"{what} {problem}; {remedy}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PASSFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        # A refused value is never echoed: it may be a secret.
        hide_input_in_errors=True,
    )

    database_url: str = "sqlite:///./passflow.db"
    # The database password apart from the URL (any characters: it is put in the URL escaped,
    # as docker compose cannot escape one written into a URL).
    database_password: SecretStr | None = None
    broker_url: str = "redis://localhost:6379/0"
    # A URL, or an environment's name (ENVIRONMENTS).
    pass_base_url: str = "http://127.0.0.1:8090"
    service_provider: str = "REF30"
    # Issued by Adobe's TVE Dashboard; required wherever passflow calls Adobe Pass (the demo and
    # the tests pass the simulator's own).
    software_statement: SecretStr | None = None
    api_token: SecretStr | None = None
    poll_interval_s: float = Field(default=5.0, gt=0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    secret_key: SecretStr | None = None

    # Beyond the contract: knobs an operator may need, with safe defaults.
    pass_timeout_s: float = Field(default=10.0, gt=0)
    # Where the API is reachable from users' browsers (landing page, activation page). Unset:
    # the address `passflow api` listens on, published to the workers through Redis (and
    # DEFAULT_PUBLIC_URL before any API has started); page POSTs must then come from the
    # origin the browser itself named (its Host).
    public_url: str | None = None
    # The programmer's domain, as Adobe Pass knows it (sessions' domainName). Unset: learned
    # from the first configuration passflow reads, and kept (a login naming its MVPD then
    # makes no configuration call: checklist, "only when requiring to prompt the user").
    domain_name: str | None = Field(default=None, max_length=255)
    # A step holds its job for this long; a worker killed mid-step delays the job this much.
    # The step's upstream calls must end well within it (see worker.policy.CALL_SHARE_OF_LEASE).
    lease_s: float = Field(default=60.0, ge=5)
    # How often the sweeping worker sends due steps (polls) and re-sends lost ones; bounds a
    # poll's drift.
    sweep_interval_s: float = Field(default=0.5, gt=0)
    # A step is re-sent by the sweeper once this overdue (a message was lost).
    sweep_grace_s: float = Field(default=10.0, ge=0.5)
    # The most jobs of a split step (polls, plays) one task runs, their upstream calls side by
    # side; 1 runs every job alone.
    batch_size: int = Field(default=50, ge=1, le=500)
    # The API's group commit (api.intake): while events arrive closer together than this, a
    # batch waits this long from its first event, so one transaction, one broker message and one
    # run of the worker serve several plays (a play in a run of ten costs a third of a lone one).
    # A lone event never waits. 0: no waiting. docs/performance.md measures it against 0.
    intake_linger_ms: float = Field(default=20.0, ge=0, le=200)
    # Threads per worker process making those calls. More is slower (GIL contention): with
    # 5000 sessions polled every 15 s, 24 kept p99 drift under 0.5 s, 50 and 200 did not.
    call_threads: int = Field(default=24, ge=1, le=500)
    # "usually up to 5" resources per preauthorization call (cookbook, step 5).
    preauthorize_batch: int = Field(default=5, ge=1, le=100)
    # Bounded retries of decisions denied with action "retry" (checklist: 2-3).
    decision_retries: int = Field(default=2, ge=0, le=2)
    # Requests a step may make again, whatever the cause (a `retry` action or Deny, a gateway
    # 5xx, a timeout, a 429) before the job fails: one budget, counted in requests, never
    # nested inside the client; at most 2, so a play makes at most 3 requests (checklist:
    # "limits retries to a reasonable number (i.e., 2-3)").
    step_retries: int = Field(default=2, ge=0, le=2)
    # Database connections per process (PostgreSQL); size them to the worker's concurrency.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    # The private key (PEM) of the certificate the programmer gave Adobe for user metadata:
    # attributes Adobe sends encrypted ("state": "enc", e.g. zip) are then stored readable
    # (still encrypted at rest with PASSFLOW_SECRET_KEY); without it they are kept sealed.
    metadata_private_key: SecretStr | None = None
    # Its passphrase, when the key is protected (Adobe's openssl recipe makes it so).
    metadata_key_passphrase: SecretStr | None = None
    # The certificate (PEM, or the path of a PEM file) media tokens are verified with before a
    # Permit is handed on (passflow/media_tokens.py); unset: their window, requestor and MVPD
    # are checked, their signature is left to the playback service's Media Token Verifier.
    media_token_certificate: str | None = None
    # Hosts whose MVPD logos may be fetched over plain http or from a private address (a
    # development simulator); every other logo host must be public and https.
    logo_trusted_hosts: list[str] = []
    # A play (any step but polls) waits for its device's request budget at most this long after
    # its event was accepted, then fails `rate_limited` saying how long it waited.
    throttle_deadline_s: float = Field(default=60.0, gt=0)
    # Devices are sent without their IP (Adobe then sees passflow's own address for all of
    # them, and throttles them together): only then may events leave `device.ip` out.
    devices_share_address: bool = False
    # Proxies (addresses or networks, e.g. ["10.0.0.0/8"]; "*" for any) whose X-Forwarded-For
    # and X-Forwarded-Proto the API believes, handed to uvicorn. The activation page counts
    # wrong codes per client address: behind a proxy that is not listed here every user shares
    # the proxy's address (and one user's typos lock everyone out). Empty: none is believed.
    trusted_proxies: list[str] = []
    # Log lines as JSON (for a collector) or as text (for a person); auto: text when the stream
    # is a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"
    # /docs, /redoc and /openapi.json for anyone; off, only /openapi.json with a read token.
    api_docs: bool = False
    # Configuration responses are cached this long (checklist: 3-5 minutes).
    config_cache_s: float = Field(default=180.0, ge=0, le=300)
    # Preauthorization Permits are reused this long for the same device, MVPD and resource
    # (checklist, Preauthorization Decisions Caching); never for playback. 0: never.
    preauthorization_cache_s: float = Field(default=600.0, ge=0)


    @field_validator("secret_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        """The first key encrypts: it must be strong. Later ones only decrypt, being rotated
        away (`passflow rotate-key`)."""
        return _strong(value, "the (first) key", "give a Fernet key or a passphrase, e.g. from "
                       f"{_MAKE_ONE}", first_of_list=True)

    @field_validator("api_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        return _strong(value, "the token", "`passflow token create` makes one")

    @field_validator("webhook_secret")
    @classmethod
    def _strong_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """The receiver trusts what it signs (media tokens): as strong as a key."""
        return _strong(value, "the webhook secret", f"{_MAKE_ONE} makes one")

    @model_validator(mode="after")
    def _metadata_key_opens(self) -> Settings:
        """A metadata key that cannot be loaded is said at start, not by a failed job."""
        if self.metadata_private_key is not None:
            from passflow.user_metadata import metadata_key

            passphrase = self.metadata_key_passphrase
            try:
                metadata_key(self.metadata_private_key.get_secret_value(),
                             passphrase.get_secret_value() if passphrase else None)
            except ValueError as exc:
                raise ValueError(f"PASSFLOW_METADATA_PRIVATE_KEY: {exc}") from None
        return self

    @field_validator("media_token_certificate")
    @classmethod
    def _media_token_certificate(cls, value: str | None) -> str | None:
        """Read (from its file when a path is given) and loaded once at start: a certificate
        that cannot be used is said here, not by every play failing."""
        if value is None or not value.strip():
            return None
        if "-----BEGIN" not in value:
            from pathlib import Path

            try:
                value = Path(value.strip()).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {value.strip()!r}: {exc.__class__.__name__}") \
                    from None
        from passflow.media_tokens import verification_key

        verification_key(value)
        return value

    @model_validator(mode="after")
    def _password_in_url(self) -> Settings:
        if self.database_password is not None and self.database_password.get_secret_value():
            from sqlalchemy.engine import make_url

            try:
                url = make_url(self.database_url)
            except Exception:  # noqa: BLE001 (the start-up check says what is wrong with it)
                return self
            self.database_url = url.set(
                password=self.database_password.get_secret_value()).render_as_string(
                hide_password=False)
        return self

    @field_validator("software_statement")
    @classmethod
    def _statement(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty statement is no statement (a worker refuses to start without one)."""
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "*":
                try:
                    ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not an address or a network") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give the URL users' browsers open, e.g. https://tv.example.com")
        return value.rstrip("/")

    @field_validator("domain_name")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("poll_interval_s")
    @classmethod
    def _adobes_polling_interval(cls, value: float, info: ValidationInfo) -> float:
        """Checklist, Polling Mechanism Configuring: every 3-5 s from a secondary screen, 3 s
        or more from the primary; one setting serves both, so 3 to 5. Only a stand-in on this
        host (the bundled simulator: the tests and the demo) may be polled at another pace."""
        base = info.data.get("pass_base_url") or ""
        if not 3.0 <= value <= 5.0 and not is_loopback_url(base):
            raise ValueError(f"{value:g} s is outside Adobe's 3-5 s (the checklist's polling "
                             "interval, jitter included); set 3 to 5")
        return value

    @field_validator("pass_base_url")
    @classmethod
    def _environment(cls, value: str) -> str:
        named = ENVIRONMENTS.get(value.strip().lower())
        if named:
            return named
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"give a URL or one of: {', '.join(ENVIRONMENTS)}")
        return value.rstrip("/")

    @property
    def pass_environment(self) -> str:
        """The Adobe environment's name, or "custom" (the simulator, a proxy)."""
        return next((name for name, url in ENVIRONMENTS.items() if url == self.pass_base_url),
                    "custom")


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this host (a local stand-in of Adobe Pass, such as the simulator)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
