"""The operations console in real headless Chromium (Debian's, driven by Playwright), as a support
agent uses it after plays ran: sign in, find a subscriber's Permit and Deny with their reasons,
filter the failed jobs and retry one, watch the overview count what the test made, and sign
out; a `read` token cannot act and a POST without the CSRF token is refused. Screenshots of the
device page and the overview go to tests/artifacts/ (docs/ carries copies for the README)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from api.auth import create_token
from models.db import session_scope
from passflow.serving import BackgroundServer
from tests.support import TOKEN, new_device, screenshot, send_event, wait_for, wait_for_status

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def laptop(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context
    context.close()


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/console")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def signed_in_device(api: httpx.Client, sim: httpx.Client):
    device = new_device()
    auth = send_event(api, "authentication.requested", device, mvpd="Cablevision")
    wait_for_status(auth, "waiting_for_user")
    sim.post("/_sim/login", json={"code": api.get(f"/v1/jobs/{auth}").json()["result"]["code"]}
             ).raise_for_status()
    assert wait_for_status(auth) == "succeeded"
    return device


def figure(page: Page, name: str) -> int:
    return int(page.locator(f'[data-figure="{name}"]').inner_text())


def test_an_operator_reads_a_story_retries_a_failure_and_watches_the_overview(
        laptop: BrowserContext, browser: Browser, api: httpx.Client, jobs_env: httpx.Client,
        api_server: BackgroundServer):
    base = api_server.url
    # The tables are empty; the API's figures are kept a few seconds (api.stats.CACHE_S), and
    # this server served the test before: its figures first catch up with the empty tables.
    totals = wait_for(lambda: (lambda t: t if not any(t.values()) else None)(
        api.get("/v1/stats/decisions").json()["totals"]), timeout=15)
    device = signed_in_device(api, jobs_env)
    for resource in ("REF30", "HBO"):  # HBO: the simulator's MVPD denies it
        assert wait_for_status(send_event(api, "authorization.requested", device,
                                    mvpd="Cablevision", resource=resource)) == "succeeded"
    stranger = new_device()  # nobody signed in on it: its play fails
    failed = send_event(api, "authorization.requested", stranger, mvpd="Cablevision",
                  resource="REF30")
    assert wait_for_status(failed) == "failed"

    page = laptop.new_page()
    sign_in(page, base, TOKEN)
    [cookie] = [c for c in laptop.cookies() if c["name"] == "passflow_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The overview counts what this test made, and says what the JSON endpoint says.
    def counted() -> dict | None:  # a figure is kept a few seconds (api.stats.CACHE_S)
        now = api.get("/v1/stats/decisions").json()["totals"]
        return now if (now["Permit"] >= totals["Permit"] + 1
                       and now["Deny"] >= totals["Deny"] + 1) else None

    wait_for(counted, timeout=15)
    wait_for(lambda: figure(page, "decisions.Permit") == api.get(
        "/v1/stats/decisions").json()["totals"]["Permit"], timeout=15)
    assert figure(page, "decisions.Deny") == api.get("/v1/stats/decisions").json()["totals"][
        "Deny"]
    assert figure(page, "denies.Cablevision.authorization_denied_by_mvpd") >= 1
    assert figure(page, "auth.logged_in") >= 1
    # Live: one more Permit appears without a reload.
    shown = figure(page, "decisions.Permit")
    assert wait_for_status(send_event(api, "authorization.requested", device, mvpd="Cablevision",
                                resource="REF30")) == "succeeded"
    expect(page.locator('[data-figure="decisions.Permit"]')).to_have_text(
        str(shown + 1), timeout=15_000)
    expect(page.locator("#updated")).to_contain_text("Updated at")
    screenshot(page, "console-overview")

    # A subscriber's story: searched by device id, Permit and Deny with their reasons.
    page.get_by_label("Search").fill(device.id)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Device {device.id}")).to_be_visible()
    deny = page.locator('li[data-kind="decision"][data-outcome="Deny"]')
    expect(deny).to_have_count(1)
    expect(deny).to_contain_text("HBO")
    expect(deny).to_contain_text("authorization_denied_by_mvpd")
    expect(deny).to_contain_text("no remedy")  # the action, in words
    expect(page.locator('li[data-kind="decision"][data-outcome="Permit"]')).to_have_count(2)
    expect(page.locator('li[data-kind="session"]')).to_contain_text("logged in after")
    screenshot(page, "console-device")

    # Failed jobs, filtered, and one retried: the new job is linked and the action audited.
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Device id").fill(stranger.id)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("failed")
    rows.get_by_role("link", name=failed[:8]).click()
    expect(page.get_by_role("heading", name=f"Job {failed}")).to_be_visible()
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text(failed)
    new_id = re.search(r"/console/jobs/([0-9a-f-]{36})", page.url).group(1)
    assert api.get(f"/v1/jobs/{new_id}").json()["retry_of"] == failed
    page.get_by_role("status").get_by_role("link", name=failed).click()
    expect(page.locator("table").last).to_contain_text("console:PASSFLOW_API_TOKEN")
    expect(page.get_by_role("link", name=new_id).first).to_be_visible()
    wait_for_status(new_id)

    # Without the CSRF token, even an admin's POST is refused.
    refused = laptop.request.post(f"{base}/console/jobs/{failed}/retry", form={"csrf": "x"})
    assert refused.status == 403

    # A read token may look, not act.
    with session_scope() as session:
        read = create_token(session, name=f"support-{uuid.uuid4()}", scope="read")
    reader = browser.new_context()
    try:
        look = reader.new_page()
        sign_in(look, base, read)
        look.goto(f"{base}/console/jobs/{failed}")
        expect(look.get_by_role("heading", name=f"Job {failed}")).to_be_visible()
        expect(look.get_by_role("button", name="Retry")).to_have_count(0)
        csrf = look.locator('input[name="csrf"]').first.get_attribute("value")
        answer = reader.request.post(f"{base}/console/jobs/{failed}/retry",
                                     form={"csrf": csrf})
        assert answer.status == 403 and "admin" in answer.text()
    finally:
        reader.close()

    # Sign out: back to the form, and the pages are closed.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    page.goto(f"{base}/console/devices/{device.id}")
    expect(page.get_by_label("API token")).to_be_visible()


def test_the_console_on_a_phone_is_usable_by_keyboard(browser: Browser, api: httpx.Client,
                                                      api_server: BackgroundServer,
                                                      jobs_env: httpx.Client):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(f"{api_server.url}/console")
        expect(page.get_by_label("API token")).to_be_focused()
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
        # Nothing wider than the screen but the tables' own scroll boxes.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        page.keyboard.press("Tab")  # the skip link first
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    finally:
        context.close()


def test_the_overview_never_has_two_refreshes_in_flight(laptop: BrowserContext, database_url,
                                                        api_server: BackgroundServer):
    """A slow server (each refresh answered after 11 s, more than two refresh periods) is never
    sent a second request for the panels while one is in flight: the next refresh is scheduled
    when the last answered. Timers are Playwright's clock, not the wall's."""
    page = laptop.new_page()
    page.add_init_script("""
      window.__inflight = 0; window.__most = 0; window.__sent = 0;
      const real = window.fetch;
      window.fetch = function (url, options) {
        if (!String(url).includes("/overview/panels")) { return real(url, options); }
        window.__inflight += 1; window.__sent += 1;
        window.__most = Math.max(window.__most, window.__inflight);
        return real(url, options).then(answer => new Promise(resolve => setTimeout(() => {
          window.__inflight -= 1; resolve(answer); }, 11000)));
      };
    """)
    page.clock.install()
    sign_in(page, api_server.url, TOKEN)
    for _ in range(12):  # a minute of the page's time, in steps
        page.clock.run_for(5_000)
        page.wait_for_timeout(50)  # the real fetch's answer arrives between steps
    sent, most = page.evaluate("[window.__sent, window.__most]")
    assert sent >= 3 and most == 1, (sent, most)
