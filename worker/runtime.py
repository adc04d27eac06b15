"""Per-process resources of a worker: Redis, the cipher, the Adobe Pass client.

Built lazily and rebuilt after a fork (Celery's prefork pool), because sockets and pools must not
be shared between processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import redis

import passflow
from passflow.crypto import Cipher, cipher_from_settings
from passflow.settings import DEFAULT_PUBLIC_URL, Settings, get_settings
from worker import metrics
from worker.adobe_pass import AdobePass, Device
from worker.adobe_pass.types import Configuration
from worker.registration import SqlCredentialStore, redis_refresh_lock
from worker.throttle import DeviceThrottle

# Where `passflow api` says it listens when PASSFLOW_PUBLIC_URL is unset; read again after this.
PUBLIC_URL_KEY = "passflow:public-url"
PUBLISHED_URL_FRESH_S = 30.0
# How long the logo URLs of a configuration read stay fetchable by the public picker.
LOGO_INDEX_S = 24 * 3600

# A service provider's software statement is read again this often (a new one in
# `passflow service-providers add` replaces it); the active ones, for intake, this often.
STATEMENTS_FRESH_S = 30.0
SERVED_FRESH_S = 2.0

# What makes a platform, for the configuration's cache (the restricted X-Device-Info keys).
PLATFORM_KEYS = ("primaryHardwareType", "osName", "osFamily", "osVendor", "browserName")


class NotServed(LookupError):
    """An event or a job names a service provider the deployment does not serve."""

    def __init__(self, service_provider: str):
        super().__init__(f"service provider {service_provider!r} is not served by this "
                         "deployment (`passflow service-providers list`)")
        self.service_provider = service_provider


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.pid = os.getpid()
        self._published: tuple[str, float] | None = None
        self._clients: dict[str, tuple[str, AdobePass]] = {}
        self._clients_lock = threading.Lock()
        self._statements: dict[str, tuple[str, float]] = {}
        self._active: tuple[frozenset[str], float] = (frozenset(), float("-inf"))

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.broker_url, socket_timeout=5,
                                    health_check_interval=30)

    @cached_property
    def cipher(self) -> Cipher:
        return cipher_from_settings()

    @cached_property
    def throttle(self) -> DeviceThrottle:
        # Without a forwarded IP Adobe sees passflow's own address: one bucket for all of them.
        # Per Adobe environment: each keeps its own buckets (a device's burst spent at staging
        # is not spent in production, nor at a simulator started anew).
        environment = hashlib.sha256(self.settings.pass_base_url.encode()).hexdigest()[:8]
        return DeviceThrottle(self.redis, prefix=f"passflow:throttle:{environment}:",
                              shared_key="passflow-egress"
                              if self.settings.devices_share_address else None)

    # Adobe clients: one registry keyed by service provider ------------------------------------
    def adobe_for(self, service_provider: str) -> AdobePass:
        """The Adobe Pass client of a service provider the deployment serves: its own software
        statement, registration and access token (stored per statement), throttle and caches
        shared by the pool. A service provider added with `passflow service-providers add` is
        found at its first use, without a restart. NotServed for one the deployment lacks."""
        statement = self._statement(service_provider)
        with self._clients_lock:
            found = self._clients.get(service_provider)
            if found is None or found[0] != statement:
                if found is not None:
                    found[1].close()
                found = (statement, self._new_client(service_provider, statement))
                self._clients[service_provider] = found
        return found[1]

    def _new_client(self, service_provider: str, statement: str) -> AdobePass:
        from worker.metrics import observe_adobe_call

        s = self.settings
        return AdobePass(
            s.pass_base_url,
            software_statement=statement,
            credentials=SqlCredentialStore(self.cipher, s.pass_base_url, service_provider),
            timeout=s.pass_timeout_s,
            max_retries=0,  # the engine owns the one retry budget (worker.engine._decide)
            # A registration and a token request, and a margin.
            refresh_lock=redis_refresh_lock(self.redis, ttl_s=2 * s.pass_timeout_s + 5),
            # Says what calls, and which version (a device's own User-Agent goes instead on
            # its calls, when its event carries one).
            user_agent=f"passflow/{passflow.__version__} (Adobe Pass REST API V2 client)",
            rate_limiter=self.throttle,
            on_throttled=self.throttle.answered_429,
            on_response=observe_adobe_call,
        )

    def _statement(self, service_provider: str) -> str:
        """The software statement of a served service provider: the configured one's from the
        settings, any other's from `service_providers` (read again every STATEMENTS_FRESH_S)."""
        s = self.settings
        if service_provider == s.service_provider:
            if s.software_statement is None:
                raise RuntimeError("PASSFLOW_SOFTWARE_STATEMENT is not set: passflow registers "
                                   "with Adobe Pass using the statement from the TVE Dashboard")
            return s.software_statement.get_secret_value()
        now = time.monotonic()
        cached = self._statements.get(service_provider)
        if cached is None or now - cached[1] > STATEMENTS_FRESH_S:
            from models import ServiceProvider
            from models.db import session_scope

            with session_scope() as session:
                row = session.get(ServiceProvider, service_provider)
                sealed = row.software_statement_enc if row is not None else None
            if sealed is None:
                self._statements.pop(service_provider, None)
                raise NotServed(service_provider)
            cached = (self.cipher.decrypt(sealed), now)
            self._statements[service_provider] = cached
        return cached[0]

    def service_providers(self) -> list[str]:
        """Every service provider served now: the configured one first, then those added."""
        from sqlalchemy import select

        from models import ServiceProvider
        from models.db import session_scope

        with session_scope() as session:
            added = list(session.scalars(select(ServiceProvider.id).where(
                ServiceProvider.status == "active").order_by(ServiceProvider.id)))
        return [self.settings.service_provider,
                *(sp for sp in added if sp != self.settings.service_provider)]

    def served(self, service_provider: str) -> bool:
        """Whether events may name the service provider: the configured one, or one added and
        not retired (read again at once for one not known active, at most once a second)."""
        if service_provider == self.settings.service_provider:
            return True
        now = time.monotonic()
        active, read_at = self._active
        stale = now - read_at > SERVED_FRESH_S
        if stale or (service_provider not in active and now - read_at >= 1.0):
            from sqlalchemy import select

            from models import ServiceProvider
            from models.db import session_scope

            with session_scope() as session:
                active = frozenset(session.scalars(select(ServiceProvider.id).where(
                    ServiceProvider.status == "active")))
            self._active = (active, now)
        return service_provider in active

    @cached_property
    def call_pool(self) -> ThreadPoolExecutor:
        """Threads for the upstream calls of a batch, side by side (they wait on the network)."""
        return ThreadPoolExecutor(max_workers=self.settings.call_threads,
                                  thread_name_prefix="passflow-call")

    def call_all(self, calls: Mapping[str, Callable[[], Any]], *,
                 deadline: float | None = None,
                 arrivals: Mapping[str, float] | None = None,
                 resends: Mapping[str, int] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, int]]:
        """Run the calls at once, keyed by job id: each one's answer, or the exception it
        raised, and how many requests each sent again after a 401 (at most its `resends`
        entry: the room left in its step's retry budget). Adobe Pass calls end by `deadline`
        (time.monotonic(): see AdobePass.deadline) and wait their turn for request budget as
        their job (see DeviceThrottle)."""
        resent: dict[str, int] = {}

        def capture(key: str, call: Callable[[], Any]) -> Any:
            try:
                with AdobePass.deadline(deadline), \
                        AdobePass.resend_budget((resends or {}).get(key)) as spent, \
                        self.throttle.waiting_as(key, (arrivals or {}).get(key, 0.0)):
                    try:
                        return call()
                    finally:
                        if spent[0]:
                            resent[key] = spent[0]
            except Exception as exc:
                return exc

        if not calls:
            return {}, resent
        if len(calls) == 1:
            return {key: capture(key, call) for key, call in calls.items()}, resent
        futures = {key: self.call_pool.submit(capture, key, call) for key, call in calls.items()}
        return {key: future.result() for key, future in futures.items()}, resent

    def configuration(self, service_provider: str, *, device: Device) -> Configuration:
        """The service provider's configuration, cached in Redis for the whole pool and the
        API a few minutes (checklist, Configuration Caching), per platform: Adobe answers
        according to the device information (X-Device-Info)."""
        platform = hashlib.sha256(json.dumps(
            {k: device.info.get(k) for k in PLATFORM_KEYS}, sort_keys=True).encode()
        ).hexdigest()[:16]
        key = (f"passflow:configuration:{self.settings.pass_base_url}:{service_provider}:"
               f"{platform}")
        ttl = self.settings.config_cache_s
        if ttl:
            cached = self.redis.get(key)
            if cached:
                return Configuration.model_validate_json(cached)
        config = self.adobe_for(service_provider).configuration.retrieve(service_provider,
                                                                         device=device)
        self.learn_domain(service_provider, config)
        self._index_logos(service_provider, config)
        metrics.know_mvpds(*(m.id for m in config.mvpds if m.id))
        if ttl:
            self.redis.set(key, config.model_dump_json(by_alias=True), ex=int(ttl))
        return config

    def published_public_url(self) -> str:
        """Where the last `passflow api` started said it listens (for a process with no
        PASSFLOW_PUBLIC_URL), else the default; read again every PUBLISHED_URL_FRESH_S."""
        now = time.monotonic()
        if self._published is None or now - self._published[1] > PUBLISHED_URL_FRESH_S:
            try:
                raw = self.redis.get(PUBLIC_URL_KEY)
            except redis.RedisError:
                raw = None
            self._published = (raw.decode() if raw else DEFAULT_PUBLIC_URL, now)
        return self._published[0]

    def publish_public_url(self, url: str) -> None:
        """The API says where it listens, for workers with no PASSFLOW_PUBLIC_URL."""
        self.redis.set(PUBLIC_URL_KEY, url)
        self._published = (url, time.monotonic())

    def domain_name(self, service_provider: str, *, device: Device) -> str | None:
        """The programmer's domain learned from a configuration and kept; a configuration is
        read only when none was learned yet (PASSFLOW_DOMAIN_NAME, when set, comes first: see
        StepContext.domain_name)."""
        learned = self.redis.get(self._domain_key(service_provider))
        if learned:
            return learned.decode()
        return self.configuration(service_provider, device=device).first_domain

    def _logos_key(self, service_provider: str) -> str:
        return f"passflow:logo-urls:{self.settings.pass_base_url}:{service_provider}"

    def _index_logos(self, service_provider: str, config: Configuration) -> None:
        """The logos of a configuration read from Adobe Pass: the only ones the public picker
        may fetch (it never asks Adobe Pass itself)."""
        urls = {m.id: m.logo_url for m in config.mvpds if m.id and m.logo_url}
        if urls:
            key = self._logos_key(service_provider)
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(key, mapping=urls)
            pipe.expire(key, LOGO_INDEX_S)
            pipe.execute()

    def logo_url(self, service_provider: str, mvpd: str) -> str | None:
        found = self.redis.hget(self._logos_key(service_provider), mvpd)
        return found.decode() if found else None

    def learn_domain(self, service_provider: str, config: Configuration) -> None:
        """Keep the domain a configuration names: logins naming an MVPD then need none."""
        if config.first_domain:
            self.redis.set(self._domain_key(service_provider), config.first_domain)

    def _domain_key(self, service_provider: str) -> str:
        return f"passflow:domain:{self.settings.pass_base_url}:{service_provider}"

    def close(self) -> None:
        with self._clients_lock:
            for _, client in self._clients.values():
                client.close()
            self._clients.clear()
        if "call_pool" in self.__dict__:
            self.call_pool.shutdown(wait=False)
        if "redis" in self.__dict__:
            self.redis.close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    global _runtime
    current = _runtime
    if current is None or current.pid != os.getpid():
        with _lock:
            if _runtime is None or _runtime.pid != os.getpid():
                _runtime = Runtime(get_settings())
            current = _runtime
    return current


def _after_fork_in_child() -> None:
    # The parent's threads (the sweeper) may hold the lock at the fork; the child builds its own
    # resources anyway (see `runtime`).
    global _lock, _runtime
    _lock = threading.Lock()
    _runtime = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def reset_runtime() -> None:
    """Forget the process' resources (tests that change settings, after fork)."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.close()
        _runtime = None
