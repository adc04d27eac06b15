"""The Adobe Pass client: one pooled httpx.Client per base URL, typed resources per API group.

Retries stay small (a couple, jittered, honouring Retry-After and the 1 s throttle wait); long
waits belong to Celery's countdown. A 401 refreshes the access token once, then the call is
retried (checklist: "first refreshes the access token before retrying the original request")
when the step's retry budget has room (`resend_budget`).
"""

from __future__ import annotations

import functools
import hashlib
import http.cookiejar
import platform
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ValidationError

from worker.adobe_pass._exceptions import (
    AdobePassError,
    APIConnectionError,
    APITimeoutError,
    InvalidClientError,
    MalformedResponseError,
    RateLimitError,
    RegistrationError,
    RegistrationRequired,
    ThrottledError,
    make_registration_error,
    make_status_error,
    retry_after_of,
)
from worker.adobe_pass.credentials import (
    CredentialStore,
    InMemoryCredentialStore,
    StoredClient,
    StoredToken,
)
from worker.adobe_pass.headers import device_info
from worker.adobe_pass.resources import (
    ConfigurationResource,
    DcrResource,
    DecisionsResource,
    LogoutResource,
    PartnerResource,
    ProfilesResource,
    SessionsResource,
)

T = TypeVar("T", bound=BaseModel)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# DCR's answers that refuse the software statement itself (the Retrieve client credentials
# page's error table): no registration with it can succeed until it is fixed.
STATEMENT_REFUSED = frozenset({"invalid_software_statement", "unapproved_software_statement"})
# The scope REST API V2 calls need (checklist, Registered Application Scoping).
REST_API_V2_SCOPE = "api:client:v2"


def _server_device_info() -> dict[str, Any]:
    """X-Device-Info for DCR calls, which passflow makes for itself, not for a device."""
    from passflow import __version__

    return {
        "primaryHardwareType": "Unknown",
        "model": "passflow",
        "version": __version__,
        "osName": "Linux",
        "osVersion": platform.release() or "unknown",
        "connectionType": "LAN",
    }


def registration_key(base_url: str, software_statement: str) -> str:
    """Whose registration, client credentials and token: one per (Adobe Pass, statement)."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{software_statement}".encode()
                          ).hexdigest()[:32]


# A call's deadline and resend budget, per thread (AdobePass.deadline, .resend_budget).
_CALL = threading.local()


class AdobePass:
    """Client of Adobe Pass DCR and REST API V2.

    >>> with AdobePass("http://127.0.0.1:8090", software_statement=statement) as ap:
    ...     profiles = ap.profiles.list("REF30", device=Device(id="tv-1", ip="203.0.113.7"))
    """

    def __init__(
        self,
        base_url: str,
        *,
        software_statement: str,
        credentials: CredentialStore | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        refresh_lock: Callable[[str, float | None], AbstractContextManager[bool]] | None = None,
        transport: httpx.BaseTransport | None = None,
        on_response: Callable[[str, int, float], None] | None = None,
        rate_limiter: Callable[[str, Mapping[str, str]], float] | None = None,
        on_throttled: Callable[[str, Mapping[str, str], float], None] | None = None,
        user_agent: str = "passflow",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self._software_statement = software_statement
        self._credentials = credentials or InMemoryCredentialStore()
        self._registration_key = registration_key(self.base_url, software_statement)
        self._local_lock = threading.Lock()
        self._refresh_lock = refresh_lock or self._in_process_lock
        self._observers = [on_response] if on_response is not None else []
        self._rate_limiter = rate_limiter
        self._on_throttled = on_throttled
        self._sleep = sleep
        self._clock = clock
        # One small connection pool per thread: httpcore checks every pooled connection on each
        # request, so one pool shared by dozens of threads spends its time scanning itself.
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url,
            "timeout": timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            "transport": transport,
            "limits": httpx.Limits(max_connections=4, max_keepalive_connections=4),
            "headers": {"User-Agent": user_agent, "Accept": "application/json"},
            "follow_redirects": False,
            # A client serves every device: a cookie one answer set must never go out with
            # another device's call (and parsing them costs each call ~5% of its CPU).
            "cookies": _NoCookies(),
        }
        self._per_thread = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self.dcr = DcrResource(self)
        self.configuration = ConfigurationResource(self)
        self.sessions = SessionsResource(self)
        self.profiles = ProfilesResource(self)
        self.decisions = DecisionsResource(self)
        self.logout = LogoutResource(self)
        self.partner = PartnerResource(self)

    # lifecycle -----------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        client = getattr(self._per_thread, "client", None)
        if client is None:
            client = self._per_thread.client = httpx.Client(**self._http_options)
            with self._clients_lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> AdobePass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What this thread's calls may spend, whichever client makes them (a step's call is made
    # by its service provider's client): set by the caller around a call.
    @staticmethod
    @contextmanager
    def deadline(at: float | None) -> Iterator[None]:
        """Calls made by this thread inside end by `at` (time.monotonic()): each request's
        timeouts are cut to the time left, no retry starts after it, and a request that would
        start after it fails as a timeout (retryable, by the step's policy)."""
        previous = getattr(_CALL, "deadline", None)
        _CALL.deadline = at
        try:
            yield
        finally:
            _CALL.deadline = previous

    @staticmethod
    @contextmanager
    def resend_budget(allowed: int | None) -> Iterator[list[int]]:
        """Calls made by this thread inside may send a request again after a 401's token
        refresh at most `allowed` times (None: once per call, as outside a step); yields a
        one-item list counting the requests sent again, for the step's one retry budget."""
        previous = getattr(_CALL, "resends", None)
        spent = [0]
        _CALL.resends = (allowed, spent)
        try:
            yield spent
        finally:
            _CALL.resends = previous

    @staticmethod
    def _may_resend() -> bool:
        allowed, spent = getattr(_CALL, "resends", None) or (None, [0])
        if allowed is not None and spent[0] >= allowed:
            return False
        spent[0] += 1
        return True

    @staticmethod
    def _time_left() -> float | None:
        at = getattr(_CALL, "deadline", None)
        return None if at is None else at - time.monotonic()

    # registration and tokens ---------------------------------------------------------------
    @property
    def registration_key(self) -> str:
        return self._registration_key

    @contextmanager
    def _in_process_lock(self, _key: str, wait_s: float | None) -> Iterator[bool]:
        held = self._local_lock.acquire(timeout=-1 if wait_s is None else max(0.0, wait_s))
        try:
            yield held
        finally:
            if held:
                self._local_lock.release()

    def access_token(self) -> str:
        """A valid access token: the cached one, else one fetched once for all callers. A
        caller that cannot get the registration lock before its deadline (another worker is
        registering or refreshing) hears ThrottledError: it waits, it has not failed."""
        cached = self._credentials.load_token(self._registration_key)
        if cached and cached.fresh(self._clock()):
            return cached.value
        with self._refresh_lock(self._registration_key, self._time_left()) as held:
            if not held:
                raise ThrottledError(1.0, endpoint="dcr.token",
                                     reason="another worker is registering passflow")
            cached = self._credentials.load_token(self._registration_key)
            if cached and cached.fresh(self._clock()):
                return cached.value
            return self._fetch_token().value

    def _fetch_token(self) -> StoredToken:
        client = self._client_credentials()
        try:
            issued = self.dcr.token(client_id=client.client_id, client_secret=client.client_secret)
        except InvalidClientError as exc:
            # The credentials were revoked or regenerated. Registering again would invalidate
            # every user's profile (DCR FAQ 9): never silently; an operator decides.
            problem = ("invalid_client: Adobe Pass refused the stored client credentials "
                       "(revoked or regenerated)")
            self._credentials.report_problem(self._registration_key, problem)
            raise RegistrationRequired(problem) from exc
        token = StoredToken(value=issued.access_token,
                            expires_at=issued.expires_at(self._clock()),
                            lifetime_s=issued.expires_in)
        self._credentials.save_token(self._registration_key, token)
        return token

    def _client_credentials(self) -> StoredClient:
        problem = self._credentials.problem(self._registration_key)
        if problem:
            raise RegistrationRequired(problem)
        client = self._credentials.load_client(self._registration_key)
        if client is None:
            if self._credentials.registered_before(self._registration_key):
                problem = "the stored client credentials are gone"
                self._credentials.report_problem(self._registration_key, problem)
                raise RegistrationRequired(problem)
            client = self._register()  # the first registration: no profile exists yet
        return client

    def register(self) -> StoredClient:
        """A deliberate new registration (`passflow register`): new client credentials, which
        invalidate the profiles obtained with the old ones (DCR FAQ 9)."""
        with self._refresh_lock(self._registration_key, None) as held:
            if not held:
                raise ThrottledError(1.0, endpoint="dcr.register",
                                     reason="another worker is registering passflow")
            return self._register()

    def _register(self) -> StoredClient:
        try:
            registered = self.dcr.register(software_statement=self._software_statement)
        except RegistrationError as exc:
            if exc.oauth_error not in STATEMENT_REFUSED:
                raise
            # Every call of this brand would fail the same way: said where operators look
            # (/healthz, passflow_registration_problem, `service-providers list`), and no
            # registration is tried again until an operator fixed the statement.
            problem = (f"{exc.oauth_error}: Adobe Pass refused the software statement; fix it "
                       "(or its approval) in the TVE Dashboard")
            self._credentials.report_problem(self._registration_key, problem)
            raise RegistrationRequired(problem) from exc
        client = StoredClient(registered.client_id, registered.client_secret,
                              tuple(registered.scopes))
        self._credentials.save_client(self._registration_key, client)
        if REST_API_V2_SCOPE not in registered.scopes:
            # Checklist, Registered Application Scoping: every call would answer 401.
            problem = (f"scope {REST_API_V2_SCOPE} not granted (granted: "
                       f"{' '.join(registered.scopes) or 'none'}): fix the software statement "
                       "in the TVE Dashboard")
            self._credentials.report_problem(self._registration_key, problem)
            raise RegistrationRequired(problem)
        return client

    @staticmethod
    def _registration_refused(error: AdobePassError, refreshed: bool) -> bool:
        """Whether a 401 says the registration, not the token, is refused: its action is
        `application-registration` and a token this call had just fetched was refused too."""
        return refreshed and getattr(error, "action", None) == "application-registration"

    def invalidate_token(self, value: str) -> None:
        self._credentials.discard_token(self._registration_key, value)

    def _renew_rejected(self, rejected: str, sent_at: float) -> None:
        """Adobe Pass refused `rejected` (401) on a request sent at `sent_at`: a new token,
        unless another caller got one after that moment. A stored token issued before it is
        no better than the one refused (Adobe may have revoked them all), so it is not reused."""
        self.invalidate_token(rejected)
        with self._refresh_lock(self._registration_key, self._time_left()) as held:
            if not held:
                raise ThrottledError(1.0, endpoint="dcr.token",
                                     reason="another worker is renewing the access token")
            stored = self._credentials.load_token(self._registration_key)
            if (stored is not None and stored.value != rejected and stored.fresh(self._clock())
                    and stored.issued_at is not None and stored.issued_at > sent_at):
                return
            self._fetch_token()

    # requests ------------------------------------------------------------------------------
    def _dcr_headers(self) -> dict[str, str]:
        return {"X-Device-Info": device_info(_server_device_info())}

    def request(
        self,
        method: str,
        path: str,
        *,
        cast: type[T],
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        authenticated: bool = True,
        registration: bool = False,
    ) -> T:
        """Send one call with bounded retries, token refresh on 401, and typed parsing."""
        attempt = 0
        refreshed = False
        content = None
        if data is not None:
            # Encoded here so an empty form still says what it is (Sessions may be created with
            # no field at all and resumed later).
            content = urlencode(data).encode()
        while True:
            call_headers = dict(headers or {})
            if content is not None:
                call_headers["Content-Type"] = FORM_CONTENT_TYPE
            token = None
            if authenticated:
                token = self.access_token()
                call_headers["Authorization"] = f"Bearer {token}"
            sent_at = self._clock()
            try:
                response = self._send(method, path, endpoint, call_headers, params, content, json)
            except AdobePassError as exc:
                error: AdobePassError = exc
            else:
                if response.status_code == 401 and token is not None:
                    error = make_status_error(response, endpoint=endpoint)
                    if error.code == "invalid_access_token_service_provider":
                        # The token is not valid for this service provider: a new token
                        # would not be either (a configuration fault, not an expiry).
                        raise error
                    if self._registration_refused(error, refreshed):
                        # The error codes page's action: "The client application requires to
                        # register itself again". A new registration voids every user's
                        # profile (DCR FAQ 9): an operator's act (`passflow register`), never
                        # passflow's own. Until then every call stops here, with no request.
                        problem = (f"Adobe Pass answered {error.code or 'HTTP 401'} (action "
                                   f"application-registration) on {endpoint} with an access "
                                   "token it had just issued")
                        self._credentials.report_problem(self._registration_key, problem)
                        raise RegistrationRequired(problem) from error
                    if refreshed:
                        raise error
                    # Checklist: refresh the access token before retrying the request, when
                    # the step's retry budget has room for one more request (else the next
                    # attempt, if any, starts with a fresh token).
                    refreshed = True
                    if not self._may_resend():
                        self.invalidate_token(token)  # the next attempt starts with a new one
                        raise error
                    self._renew_rejected(token, sent_at)
                    continue
                if response.is_success:
                    return self._parse(response, cast, endpoint)
                error = (make_registration_error if registration else make_status_error)(
                    response, endpoint=endpoint
                )
            delay = self._backoff(attempt, error)
            left = self._time_left()
            if (not error.retryable or attempt >= self.max_retries
                    or isinstance(error, ThrottledError) or (left is not None and left < delay)):
                raise error
            self._sleep(delay)
            attempt += 1

    def _send(self, method, path, endpoint, headers, params, content, json) -> httpx.Response:
        if self._rate_limiter is not None:
            wait = self._rate_limiter(endpoint, headers)
            if wait > 0:
                # Not slept here: the caller reschedules (a Celery countdown), freeing its slot.
                raise ThrottledError(wait, endpoint=endpoint)
        left = self._time_left()
        extra: dict[str, Any] = {}
        if left is not None:
            if left <= 0:
                raise APITimeoutError(f"{endpoint}: the step's deadline passed")
            configured: httpx.Timeout = self._http_options["timeout"]
            extra["timeout"] = httpx.Timeout(**{
                name: min(value, left) if value is not None else left
                for name, value in configured.as_dict().items()})
        started = time.perf_counter()
        try:
            response = self._http().request(
                method, self._url(path), headers=headers, params=params, content=content,
                json=json, **extra,
            )
        except httpx.TimeoutException as exc:
            self._observe(endpoint, 0, started)
            raise APITimeoutError(f"{endpoint}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            self._observe(endpoint, 0, started)
            raise APIConnectionError(f"{endpoint}: {type(exc).__name__}") from exc
        self._observe(endpoint, response.status_code, started)
        if response.status_code == 429 and self._on_throttled is not None:
            # Every call of this identity waits now, not only this one (throttling page).
            self._on_throttled(endpoint, headers, retry_after_of(response) or 0.0)
        return response

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one client per process and brand)
    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of a path, parsed once: httpx parses and merges a relative URL
        with the base on every request, ~15% of a call's CPU."""
        return httpx.URL(self.base_url + path)

    def _observe(self, endpoint: str, status: int, started: float) -> None:
        for observer in self._observers:
            observer(endpoint, status, time.perf_counter() - started)

    def add_observer(self, observer: Callable[[str, int, float], None]) -> None:
        """Also call `observer(endpoint, status, seconds)` after every request."""
        self._observers.append(observer)

    def stored_client(self) -> StoredClient | None:
        """The client credentials passflow holds for this registration, if any."""
        return self._credentials.load_client(self._registration_key)

    @staticmethod
    def _parse(response: httpx.Response, cast: type[T], endpoint: str) -> T:
        try:
            return cast.model_validate(response.json())
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
            kind = "fields" if isinstance(exc, ValidationError) else "JSON"
            raise MalformedResponseError(
                f"unexpected {kind} in the answer", status_code=response.status_code,
                endpoint=endpoint,
            ) from None

    @staticmethod
    def _backoff(attempt: int, error: AdobePassError) -> float:
        delay = min(8.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.25)
        if isinstance(error, RateLimitError):
            delay = max(delay, error.retry_after)
        return delay


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: Adobe Pass's API is not a browser session."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None
