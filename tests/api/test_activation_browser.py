"""The activation and landing pages in real headless Chromium (Debian's, driven by Playwright):
code entry, the simulator's MVPD login page, the success page, the provider picker, wrong and
expired codes, the retry limit. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from passflow.serving import BackgroundServer
from tests.support import device_json, new_device, screenshot, wait_for_status


@pytest.fixture
def page(browser: Browser, api: httpx.Client, redis_client: redis.Redis) -> Iterator[Page]:
    # Each test starts with a clean slate for this browser's address: retry count and budget.
    for pattern in ("passflow:activate:tries:*", "passflow:throttle:*127.0.0.1*"):
        for key in redis_client.scan_iter(pattern):
            redis_client.delete(key)
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  is_mobile=True, has_touch=True)  # a phone
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


shot = screenshot


def start_authentication(api: httpx.Client, device=None, **fields) -> tuple[str, str]:
    device = device or new_device()
    body = {"event_id": f"evt-{uuid.uuid4()}", "type": "authentication.requested",
            "device": device_json(device), **fields}
    job_id = api.post("/v1/events", json=body).json()["job_id"]
    wait_for_status(job_id, "waiting_for_user")
    return job_id, api.get(f"/v1/jobs/{job_id}").json()["result"]["code"]


def sign_in_at_the_mvpd(page: Page, provider: str) -> None:
    expect(page.get_by_role("heading")).to_have_text(f"Sign in to {provider}")
    shot(page, "3-mvpd-login")
    page.get_by_label("Username").fill("user1")
    page.get_by_label("Password").fill("pass1")
    page.get_by_role("button", name="Sign in").click()


def test_code_entry_to_mvpd_login_to_success(page: Page, api: httpx.Client,
                                            api_server: BackgroundServer):
    job_id, code = start_authentication(api, mvpd="Cablevision")
    page.goto(f"{api_server.url}/activate")
    expect(page).to_have_title("Activate your TV")
    field = page.get_by_label("Code shown on your TV")
    expect(field).to_be_focused()
    # Forgiving input: lower case, a dash and a space, typed with the keyboard only.
    messy = f" {code[:3].lower()}-{code[3:]} "
    page.keyboard.type(messy)
    shot(page, "1-activate")
    page.keyboard.press("Enter")
    sign_in_at_the_mvpd(page, "Optimum")
    expect(page.get_by_role("heading")).to_have_text("You're signed in")
    assert page.url.startswith(f"{api_server.url}/landing?job={job_id}")
    shot(page, "4-signed-in")
    assert wait_for_status(job_id) == "succeeded"
    assert api.get(f"/v1/jobs/{job_id}").json()["result"]["profile"]["mvpd"] == "Cablevision"


def test_picker_path_without_mvpd(page: Page, api: httpx.Client, api_server: BackgroundServer):
    job_id, code = start_authentication(api)
    page.goto(f"{api_server.url}/activate")
    page.get_by_label("Code shown on your TV").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading")).to_have_text("Choose your TV provider")
    providers = page.locator("#providers li:not([hidden]) button")
    expect(providers).to_have_count(4)  # TempPass is filtered out of the picker
    expect(page.get_by_role("button", name="DISH")).to_be_visible()
    logo = page.locator("#providers img").first
    assert logo.get_attribute("src").startswith("/activate/logos/")  # same origin only
    # The logo loads from passflow itself (served from the MVPD's logoUrl, cached).
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=logo.element_handle())
    shot(page, "2-picker")
    page.get_by_label("Search providers").fill("spec")
    expect(providers).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Spectrum")).to_be_focused()
    page.keyboard.press("Enter")
    sign_in_at_the_mvpd(page, "Spectrum")
    expect(page.get_by_role("heading")).to_have_text("You're signed in")
    assert wait_for_status(job_id) == "succeeded"
    done = api.get(f"/v1/jobs/{job_id}").json()
    assert done["result"]["profile"]["mvpd"] == "Spectrum"
    assert done["mvpd"] == "Spectrum"  # the job keeps the provider the user picked


def test_wrong_and_malformed_codes_say_so(page: Page, api_server: BackgroundServer):
    page.goto(f"{api_server.url}/activate")
    page.get_by_label("Code shown on your TV").fill("ZZZZ999")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("We don't recognize that code")
    expect(page.get_by_label("Code shown on your TV")).to_have_attribute("aria-invalid", "true")
    shot(page, "5-wrong-code")
    page.get_by_label("Code shown on your TV").fill("!!")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("doesn't look like a code")


def test_expired_code_says_start_again(page: Page, api: httpx.Client,
                                       api_server: BackgroundServer, jobs_env: httpx.Client):
    _, code = start_authentication(api, mvpd="Cablevision")
    jobs_env.post("/_sim/clock", json={"seconds": 1801}).raise_for_status()
    page.goto(f"{api_server.url}/activate")
    page.get_by_label("Code shown on your TV").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("expired or was already used")
    shot(page, "6-expired-code")


def test_too_many_wrong_codes_are_refused(page: Page, api_server: BackgroundServer,
                                          activation_tries):
    page.goto(f"{api_server.url}/activate")
    for attempt in range(5):
        page.get_by_label("Code shown on your TV").fill(f"NOPE{attempt:03d}")
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_label("Code shown on your TV").fill("NOPE999")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading")).to_have_text("Too many tries")


def test_polling_mechanism_starting_primary_screen_polls_from_the_landing(
        api: httpx.Client, page: Page, api_server: BackgroundServer, jobs_env: httpx.Client):
    from sqlalchemy import select

    import models.db
    from models import AuthSession

    job_id, code = start_authentication(api, mvpd="Cablevision", screen="primary")
    jobs_env.post("/_sim/login", json={"code": code}).raise_for_status()
    # A secondary-screen job logged in at the same moment is found by its polls meanwhile.
    control, control_code = start_authentication(api, mvpd="Cablevision")
    jobs_env.post("/_sim/login", json={"code": control_code}).raise_for_status()
    assert wait_for_status(control) == "succeeded"
    with models.db.session_scope() as session:
        auth = session.scalar(select(AuthSession).where(AuthSession.job_id == job_id))
        assert (auth.polls, auth.polling_started_at) == (0, None)
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "waiting_for_user"
    page.goto(f"{api_server.url}/landing?job={job_id}")
    expect(page.get_by_role("heading")).to_have_text("You're signed in")
    assert wait_for_status(job_id) == "succeeded"


def test_a_returning_user_is_offered_the_provider_it_chose_last(page: Page, api: httpx.Client,
                                                               api_server: BackgroundServer,
                                                               jobs_env: httpx.Client):
    """Checklist, TV Provider Selection Caching: the provider the TV chose last is offered
    first, one tap; the full list stays below."""
    device = new_device()
    job_id, code = start_authentication(api, device)
    page.goto(f"{api_server.url}/activate")
    page.get_by_label("Code shown on your TV").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("Continue with")).to_have_count(0)  # nothing remembered yet
    page.get_by_role("button", name="Spectrum").click()
    sign_in_at_the_mvpd(page, "Spectrum")
    assert wait_for_status(job_id) == "succeeded"
    # Some days later the sign-in has ended (Adobe Pass and passflow no longer hold it); the
    # device still remembers its provider.
    jobs_env.post("/_sim/reset", params={"keep_registrations": "true"}).raise_for_status()
    from sqlalchemy import update

    import models.db
    from models import Profile
    with models.db.session_scope() as session:
        session.execute(update(Profile).where(Profile.device_id == device.id)
                        .values(logged_out_at=Profile.created_at))

    again, code = start_authentication(api, device)
    page.goto(f"{api_server.url}/activate")
    page.get_by_label("Code shown on your TV").fill(code)
    page.get_by_role("button", name="Continue").click()
    remembered = page.get_by_role("button", name="Continue with Spectrum")
    expect(remembered).to_be_visible()
    shot(page, "2b-picker-remembered")
    remembered.click()
    sign_in_at_the_mvpd(page, "Spectrum")
    assert wait_for_status(again) == "succeeded"


def every_rest_call_carried_the_device_headers(sim: httpx.Client) -> set[str]:
    """The simulator's request log: every REST API V2 call carried AP-Device-Identifier and
    X-Device-Info (a browser's User-Agent standing for the latter), and none was refused for a
    header. Returns the endpoints seen."""
    seen = set()
    for call in sim.get("/_sim/requests").json():
        if call["endpoint"].startswith("dcr.") or call["endpoint"] == "authenticate":
            continue
        seen.add(call["endpoint"])
        browser = (call["user_agent"] or "").startswith("Mozilla/5.0 (")
        assert "ap-device-identifier" in call["headers"], call
        assert "x-device-info" in call["headers"] or browser, call
        assert call["refused"] is None, call
    return seen


def test_send_x_device_info_header_on_every_call_of_a_code_login_on_either_screen(
        page: Page, api: httpx.Client, api_server: BackgroundServer, jobs_env: httpx.Client,
        redis_client: redis.Redis):
    """Against the strict simulator (the checklist's every-request items): a second-screen login
    through the picker and a primary-screen login both succeed, and the request log shows both
    device headers on every call, the look-ups by code included."""
    jobs_env.post("/_sim/reset", params={"keep_registrations": "true"}).raise_for_status()
    for key in redis_client.scan_iter("passflow:configuration:*"):
        redis_client.delete(key)  # the picker asks Adobe for it, not the cache
    second, code = start_authentication(api)
    page.goto(f"{api_server.url}/activate?code={code}")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Spectrum").click()
    sign_in_at_the_mvpd(page, "Spectrum")
    expect(page.get_by_role("heading")).to_have_text("You're signed in")
    assert wait_for_status(second) == "succeeded"
    primary, primary_code = start_authentication(api, mvpd="Cablevision", screen="primary")
    jobs_env.post("/_sim/login", json={"code": primary_code}).raise_for_status()
    page.goto(f"{api_server.url}/landing?job={primary}")
    assert wait_for_status(primary) == "succeeded"
    assert every_rest_call_carried_the_device_headers(jobs_env) >= {
        "profiles.list", "sessions.create", "sessions.retrieve", "configuration",
        "sessions.resume", "profiles.code"}
