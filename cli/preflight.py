"""`passflow preflight`: Adobe's REST API V2 checklist against the configured environment.

A check that reads and asks, for an operator before a release (checklist, Lifecycle Testing):
it uses passflow's own registration (registering only when none exists yet, which invalidates
nothing), fetches a token, the configuration, creates one authentication session for a test
device and polls it once, asks for an MVPD that does not exist to see an enhanced error, and
prints one line per checklist item: `PASS` when this run verified it against Adobe Pass, `FAIL`
when it found it broken, `DESIGN` when it is passflow's own behaviour (the test that shows it
is named in docs/checklist.md).
"""

from __future__ import annotations

import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from passflow.settings import Settings, get_settings

# The 23 mandatory items (rest-api-v2-checklist.md), in its order: (phase, item).
ITEMS = [
    ("Registration", "Registered Application Scoping"),
    ("Registration", "Client Credentials Caching"),
    ("Registration", "Access Tokens Caching"),
    ("Configuration", "Configuration Retrieval"),
    ("Configuration", "TV Provider Selection Caching"),
    ("Authentication", "Polling Mechanism Starting"),
    ("Authentication", "Polling Mechanism Stopping"),
    ("Authentication", "Polling Mechanism Configuring"),
    ("Authentication", "Profiles Caching"),
    ("Preauthorization", "Preauthorization Decisions Retrieval"),
    ("Preauthorization", "Preauthorization Decisions Retrieval Retry"),
    ("Preauthorization", "Preauthorization Decisions Caching"),
    ("Authorization", "Authorization Decisions Retrieval"),
    ("Authorization", "Authorization Decisions Retrieval Retry"),
    ("Logout", "Logout Support"),
    ("Parameters and Headers", "Send Authorization Header"),
    ("Parameters and Headers", "Send AP-Device-Identifier Header"),
    ("Parameters and Headers", "Send X-Device-Info Header"),
    ("Parameters and Headers", "Stable Device Identifier"),
    ("Parameters and Headers", "Follow APIs References"),
    ("Error Handling", "Enhanced Error Code Handling Support"),
    ("Error Handling", "HTTP Error Handling Support"),
    ("Testing", "Lifecycle Testing"),
]

TEST_DEVICE_INFO = {"primaryHardwareType": "Unknown", "model": "passflow-preflight",
                    "version": "1", "osName": "Linux", "osVersion": "1",
                    "connectionType": "LAN"}


@dataclass
class Result:
    verdict: str  # PASS | FAIL | DESIGN
    evidence: str


def run(settings: Settings, out: Callable[[str], None] = print, *,
        with_session: bool = False) -> int:
    """Print one line per item; 0 when nothing failed. An authentication session is created
    at Adobe Pass (and polled once) only `with_session`: otherwise preflight makes only
    registration, token and configuration calls, and reads one error answer."""
    from worker.adobe_pass import AdobePassError, APIStatusError, ThrottledError
    from worker.adobe_pass import Device as PassDevice
    from worker.runtime import runtime

    calls: list[tuple[str, int]] = []
    results: dict[str, Result] = {}
    rt = runtime()
    adobe = rt.adobe_for(settings.service_provider)
    adobe.add_observer(lambda endpoint, status, _seconds: calls.append((endpoint, status)))
    sp = settings.service_provider
    # A test device of its own each run (its address from the documentation range): its
    # request budget, burst included, is its own, whatever earlier runs spent.
    device = PassDevice(id=f"passflow-preflight-{uuid.uuid4()}", info=TEST_DEVICE_INFO,
                        ip=f"2001:db8:{secrets.randbits(16):x}:{secrets.randbits(16):x}::1")
    out(f"passflow preflight: {settings.pass_base_url} ({settings.pass_environment}), "
        f"service provider {sp}")

    def live(item: str, check: Callable[[], str]) -> None:
        for _ in range(10):
            try:
                results[item] = Result("PASS", check())
            except ThrottledError as exc:  # the test device's budget: wait for it, as jobs do
                time.sleep(exc.retry_after)
                continue
            except (AdobePassError, AssertionError) as exc:
                results[item] = Result("FAIL", str(exc) or type(exc).__name__)
            return
        results[item] = Result("FAIL", "the test device's request budget stayed spent")

    def token() -> str:
        first = adobe.access_token()
        asked = sum(1 for e, _ in calls if e == "dcr.token")
        assert adobe.access_token() == first, "a second call fetched another token"
        assert sum(1 for e, _ in calls if e == "dcr.token") == asked, "the token was not reused"
        return "the token is stored and reused until the last tenth of its lifetime"

    live("Access Tokens Caching", token)
    client = adobe.stored_client()
    results["Registered Application Scoping"] = (
        Result("PASS", f"granted scopes: {' '.join(client.scopes)}")
        if client is not None and "api:client:v2" in client.scopes
        else Result("FAIL", "the registration lacks the api:client:v2 scope"))
    results["Client Credentials Caching"] = (
        Result("PASS", "client credentials stored encrypted in SQL, reused for every token")
        if client is not None else Result("FAIL", "no stored client credentials"))

    config_holder = {}

    def configuration() -> str:
        config = adobe.configuration.retrieve(sp, device=device)
        config_holder["config"] = config
        assert config.mvpds, "the configuration lists no MVPD"
        if settings.domain_name:
            domain = f"domainName {settings.domain_name} (PASSFLOW_DOMAIN_NAME)"
        else:
            assert config.first_domain, ("the configuration names no domain: set "
                                         "PASSFLOW_DOMAIN_NAME")
            rt.learn_domain(sp, config)
            domain = f"domainName {config.first_domain} (learned from it, kept)"
        return (f"{len(config.mvpds)} MVPDs; {domain}; passflow fetches it only when a "
                f"provider must be picked, cached {settings.config_cache_s:g} s per platform")

    live("Configuration Retrieval", configuration)

    def selection() -> str:
        config = config_holder["config"]
        complete = [m for m in config.mvpds if m.id and m.display_name and m.logo_url]
        assert complete, "no MVPD has an id, a display name and a logo"
        return f"{len(complete)} MVPDs carry id, displayName and logoUrl, stored with the device"

    live("TV Provider Selection Caching", selection)

    session_holder = {}

    def session() -> str:
        mvpd = next(m.id for m in config_holder["config"].mvpds if not m.is_temp_pass)
        created = adobe.sessions.create(sp, device=device, mvpd=mvpd,
                                        domain_name=settings.domain_name
                                        or config_holder["config"].first_domain,
                                        redirect_url="https://example.com/preflight")
        assert created.code, f"no code in the session answer ({created.action_name})"
        session_holder["code"] = created.code
        profiles = adobe.profiles.for_code(sp, created.code, device=device)
        assert len(profiles) == 0, "a test device is already authenticated"
        return (f"session {created.code} created and polled once (no profile yet); passflow "
                "polls from the code's display, or from the landing page on a primary screen")

    if with_session:
        live("Polling Mechanism Starting", session)
    else:
        results["Polling Mechanism Starting"] = Result(
            "DESIGN", "no session made at Adobe Pass (run `passflow preflight --with-session` "
            "to create one and poll it once); passflow polls from the code's display, or from "
            "the landing page on a primary screen")
    sent = {endpoint for endpoint, _ in calls}
    made = {"sessions.create"} if with_session else {"configuration"}
    for item, endpoints in (("Send Authorization Header", made),
                            ("Send AP-Device-Identifier Header", made),
                            ("Send X-Device-Info Header", made | {"configuration"})):
        ok = endpoints <= sent and not any(s in (400, 401) for e, s in calls if e in endpoints)
        results[item] = (Result("PASS", "sent on every call; Adobe Pass accepted them") if ok
                         else Result("FAIL", "a call with it was refused"))
    bad = [(e, s) for e, s in calls if s == 400]
    results["Follow APIs References"] = (
        Result("PASS", f"{len(calls)} calls, none refused as a bad request") if not bad
        else Result("FAIL", f"refused: {bad}"))

    def enhanced() -> str:
        try:
            adobe.profiles.for_mvpd(sp, f"no-such-mvpd-{uuid.uuid4().hex[:6]}", device=device)
        except APIStatusError as exc:
            assert exc.code and exc.action, "the error answer carries no enhanced error"
            return f"HTTP {exc.status_code} {exc.code} (action {exc.action}) read and followed"
        raise AssertionError("an unknown MVPD was not refused")

    live("Enhanced Error Code Handling Support", enhanced)

    interval = settings.poll_interval_s
    results["Polling Mechanism Configuring"] = (
        Result("PASS", f"PASSFLOW_POLL_INTERVAL_S={interval:g}, jitter within it (Adobe: 3-5 s "
                       "from a second screen, 3 s or more on the primary)")
        if 3 <= interval <= 5
        else Result("FAIL", f"PASSFLOW_POLL_INTERVAL_S={interval:g}: Adobe asks 3-5 s from a "
                            "second screen (3 s or more on the primary)"))
    retries = settings.step_retries
    for item in ("Preauthorization Decisions Retrieval Retry",
                 "Authorization Decisions Retrieval Retry"):
        results[item] = (
            Result("PASS", f"at most {retries + 1} requests a decision, whatever fails "
                   f"(failures, 429s and re-asks of a retry Deny share one budget)")
            if 1 <= retries <= 2
            else Result("FAIL", "PASSFLOW_STEP_RETRIES must be 1-2 (2-3 requests a decision)"))
    cache = settings.preauthorization_cache_s
    results["Preauthorization Decisions Caching"] = (
        Result("PASS", f"Permits reused {cache:g} s, never for playback") if cache > 0
        else Result("FAIL", "PASSFLOW_PREAUTHORIZATION_CACHE_S=0"))
    environment = settings.pass_environment
    results["Lifecycle Testing"] = (
        Result("PASS", f"running against {environment}; repeat on the other non-production "
               "environment, then Release-Production")
        if environment in ("prequal", "prequal-staging", "staging")
        else Result("DESIGN", f"{environment} environment: run preflight against prequal and "
                    "staging (PASSFLOW_PASS_BASE_URL=prequal|prequal-staging|staging) before "
                    "production"))
    for _, item in ITEMS:
        results.setdefault(item, Result("DESIGN", "passflow's behaviour: see docs/checklist.md"))
    for phase, item in ITEMS:
        result = results[item]
        out(f"{result.verdict:<6} {phase} / {item}: {result.evidence}")
    failed = sum(r.verdict == "FAIL" for r in results.values())
    out(f"{len(ITEMS)} items: {sum(r.verdict == 'PASS' for r in results.values())} verified, "
        f"{failed} failed, {sum(r.verdict == 'DESIGN' for r in results.values())} by design")
    return 1 if failed else 0


def main(*, with_session: bool = False) -> int:
    started = time.monotonic()
    code = run(get_settings(), with_session=with_session)
    print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return code
