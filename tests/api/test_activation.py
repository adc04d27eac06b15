"""The activation page's answers without a browser (tests/api/test_activation_browser.py drives
the same pages in Chromium): it follows what Adobe Pass answers the resumed session."""

from __future__ import annotations

import httpx

from tests.api.test_activation_browser import start_authentication
from tests.support import BROWSER


def test_a_resume_answered_authorize_needs_no_mvpd_login(api: httpx.Client,
                                                        api_server, jobs_env: httpx.Client):
    """With AuthNAll degradation the resume answers `authorize`: no MVPD login page, the user
    is told they are done (the browser is not sent to an MVPD that is down)."""
    jobs_env.put("/_sim/degradation", json={"mvpd": "Spectrum", "rule": "authn_all"})
    _, code = start_authentication(api)
    with httpx.Client(base_url=api_server.url, follow_redirects=False,
                      headers=BROWSER) as browser:
        page = browser.post("/activate/provider", data={"code": code, "mvpd": "Spectrum"})
    assert page.status_code == 200 and "all set" in page.text
    stats = jobs_env.get("/_sim/stats").json()
    assert stats.get("sessions.resume 200") == 1


def test_configuration_is_cached_per_platform(factories_bound, pass_env: str,
                                              jobs_env: httpx.Client):
    """Adobe answers the configuration according to the device (X-Device-Info): a phone and a
    set-top box each get their own list, and neither is served the other's from the cache."""
    from worker.adobe_pass import Device
    from worker.runtime import runtime

    jobs_env.put("/_sim/platforms", json={"mvpd": "Spectrum", "platforms": ["MobilePhone"]})
    info = {"model": "m", "version": "1", "osVersion": "1", "connectionType": "LAN"}
    box = Device(id="box", ip="192.0.2.10",
                 info={**info, "primaryHardwareType": "SetTopBox", "osName": "tvOS"})
    phone = Device(id="phone", ip="192.0.2.11",
                   info={**info, "primaryHardwareType": "MobilePhone", "osName": "iOS"})
    rt = runtime()
    rt.redis.delete(*rt.redis.keys("passflow:configuration:*") or ["-"])
    assert "Spectrum" not in {m.id for m in rt.configuration("REF30", device=box).mvpds}
    assert "Spectrum" in {m.id for m in rt.configuration("REF30", device=phone).mvpds}
    assert "Spectrum" not in {m.id for m in rt.configuration("REF30", device=box).mvpds}
    assert jobs_env.get("/_sim/stats").json()["configuration 200"] == 2  # then from the cache
