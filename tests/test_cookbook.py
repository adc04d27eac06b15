"""The seed cookbook (cookbook-client-server-seed.md), walked with the Adobe Pass client alone
against the simulator over real sockets, the login done through the MVPD login page."""

from __future__ import annotations

import re

import httpx

from worker.adobe_pass import AdobePass, Device

SP = "REF30"


def _log_in_with_a_browser_like_client(pass_url: str, authenticate_url: str) -> str:
    """What a user agent does: follow the redirects to the MVPD page, submit the form."""
    with httpx.Client(base_url=pass_url) as browser:
        login_page = browser.get(authenticate_url, follow_redirects=True)
        assert login_page.status_code == 200
        action = re.search(r'<form method="post" action="([^"]+)"', login_page.text).group(1)
        code = re.search(r'name="code" value="([^"]+)"', login_page.text).group(1)
        final = browser.post(action, data={"code": code, "username": "user1",
                                           "password": "pass1"})
        assert final.status_code == 302
        return final.headers["location"]


def test_seed_cookbook_end_to_end(adobe: AdobePass, pass_url: str, sim: httpx.Client,
                                  device: Device):
    # Step 1: register the application (DCR) -- done on first use, then cached.
    # Step 2: check for existing profiles.
    assert len(adobe.profiles.list(SP, device=device)) == 0

    # Provider list, without TempPass, as the cookbook suggests filtering.
    config = adobe.configuration.retrieve(SP, device=device)
    picker = [m.id for m in config.mvpds if not m.is_temp_pass]
    assert "Cablevision" in picker and "TempPass_TEST40" not in picker

    # Create the session: a code and a URL.
    session = adobe.sessions.create(SP, device=device, mvpd="Cablevision",
                                    domain_name="example.com",
                                    redirect_url="https://example.com/done")
    assert session.code and session.url.endswith(session.code)

    # Step 4 polls by code while the user has not logged in yet.
    assert len(adobe.profiles.for_code(SP, session.code, device=device)) == 0

    # Step 3: the user logs in on a browser; the final redirect shows the success page.
    landing = _log_in_with_a_browser_like_client(
        pass_url, adobe.sessions.authenticate_url(SP, session.code))
    assert landing == "https://example.com/done"

    # Step 4: the profile is there.
    profile = adobe.profiles.for_code(SP, session.code, device=device).get("Cablevision")
    assert profile is not None and profile.attributes["userID"].value == "cv-0001"

    # Step 5: preauthorize a catalogue.
    preauth = adobe.decisions.preauthorize(SP, "Cablevision", resources=["REF30", "CNN", "HBO"],
                                           device=device)
    assert [d.decision for d in preauth.decisions] == ["Permit", "Permit", "Deny"]

    # Step 6: authorize the play.
    play = adobe.decisions.authorize(SP, "Cablevision", resources=["CNN"], device=device)
    assert play.decisions[0].decision == "Permit" and play.decisions[0].token

    # Step 7: log out.
    logout = adobe.logout.initiate(SP, "Cablevision", redirect_url="https://example.com/bye",
                                   device=device)
    assert logout.logouts["Cablevision"].action_type == "interactive"
    assert len(adobe.profiles.list(SP, device=device)) == 0

    stats = sim.get("/_sim/stats").json()
    assert stats["registrations"] == 1 and stats.get("throttled", 0) == 0
