"""`passflow demo`: the cookbook, walked for a few devices against the bundled simulator.

It starts the simulator on a free local port, then for each device runs every step of the
client-to-server cookbook with the Adobe Pass client and prints what happened.
"""

from __future__ import annotations

import httpx

from passflow.serving import BackgroundServer
from simulator import SimConfig, create_app
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
from worker.adobe_pass import AdobePass, Device

SP = "REF30"
DEVICES = [
    (Device(id="living-room-tv", ip="203.0.113.7", port=54321,
            info={"primaryHardwareType": "SetTopBox", "model": "TV 5th Gen", "osName": "tvOS"}),
     "Cablevision", ["REF30", "CNN", "HBO"]),
    (Device(id="bedroom-stick", ip="203.0.113.8", port=41000,
            info={"primaryHardwareType": "MediaPlayer", "model": "Stick", "osName": "Android"}),
     "Dish", ["REF30", "CNN"]),
]


def _say(device: Device, message: str) -> None:
    print(f"  [{device.id}] {message}", flush=True)


def _walk(ap: AdobePass, control: httpx.Client, device: Device, mvpd: str,
          resources: list[str]) -> None:
    profiles = ap.profiles.list(SP, device=device)
    _say(device, f"step 2  profiles: {len(profiles)} found")
    config = ap.configuration.retrieve(SP, device=device)
    names = ", ".join(m.display_name or m.id for m in config.mvpds if not m.is_temp_pass)
    _say(device, f"step 3  configuration: {names}")
    session = ap.sessions.create(SP, device=device, mvpd=mvpd, domain_name="example.com",
                                 redirect_url="https://example.com/done")
    _say(device, f"step 3  session: code {session.code}, {session.action_name} at {session.url}")
    control.post("/_sim/login", json={"code": session.code}).raise_for_status()
    _say(device, "step 3  user logged in at the simulated MVPD")
    profile = ap.profiles.for_code(SP, session.code, device=device).get(mvpd)
    if profile is None:
        raise RuntimeError(f"no profile for {mvpd} after login")
    _say(device, f"step 4  profile for {profile.mvpd} ({profile.type})")
    for decision in ap.decisions.preauthorize(SP, mvpd, resources=resources,
                                              device=device).decisions:
        why = f" ({decision.error.code})" if decision.error else ""
        _say(device, f"step 5  preauthorize {decision.resource}: {decision.decision}{why}")
    decision = ap.decisions.authorize(SP, mvpd, resources=resources[:1], device=device)
    first = decision.decisions[0]
    token = "with a media token" if first.token else ""
    _say(device, f"step 6  authorize {first.resource}: {first.decision} {token}")
    for action in ap.logout.initiate(SP, mvpd, redirect_url="https://example.com/bye",
                                     device=device).logouts.values():
        _say(device, f"step 7  logout {action.mvpd}: {action.action_name}/{action.action_type}")


def run_demo() -> int:
    print("passflow demo: the Adobe Pass cookbook against the bundled simulator")
    with BackgroundServer(create_app(SimConfig.load())) as server:
        print(f"simulator listening on {server.url}")
        with AdobePass(server.url, software_statement=DEMO_SOFTWARE_STATEMENT) as ap, \
                httpx.Client(base_url=server.url) as control:
            print("step 1  application registered (DCR) on first use, token cached")
            for device, mvpd, resources in DEVICES:
                _walk(ap, control, device, mvpd, resources)
            stats = control.get("/_sim/stats").json()
    print(f"done: {stats.get('requests', 0)} Adobe Pass calls, "
          f"{stats.get('registrations', 0)} registration, {stats.get('throttled', 0)} throttled")
    return 0
