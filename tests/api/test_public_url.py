"""Where the pages are: with PASSFLOW_PUBLIC_URL unset, `passflow api --port P` serves pages whose
forms work and whose sign-in lands back on P; with it set, a form sent from another address is
refused with a message that says which address and which setting."""

from __future__ import annotations

import io
import json
import logging
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, expect

from passflow import logs
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from tests.support import BROWSER, TOKEN, ApiProcess, device_json, new_device, wait_for_status
from worker.runtime import PUBLIC_URL_KEY

ONE_BACKEND = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@ONE_BACKEND
def test_api_on_another_port_without_public_url_completes_an_activation(
        browser: Browser, worker_processes, redis_client, sim: httpx.Client,
        activation_tries: None):
    unset = {"PASSFLOW_PUBLIC_URL": None}
    redis_client.delete(PUBLIC_URL_KEY)
    api = ApiProcess(unset)
    try:
        assert api.port != 8000
        worker_processes("public-url", env=unset)
        device = new_device()
        with httpx.Client(base_url=api.url, headers=api.headers, timeout=10) as client:
            job_id = client.post("/v1/events", json={
                "event_id": f"evt-{uuid.uuid4()}", "type": "authentication.requested",
                "device": device_json(device)}).json()["job_id"]
            wait_for_status(job_id, "waiting_for_user", timeout=30)
            code = client.get(f"/v1/jobs/{job_id}").json()["result"]["code"]

            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{api.url}/activate")
            page.get_by_label("Code shown on your TV").fill(code)
            page.get_by_role("button", name="Continue").click()  # a POST to this origin
            expect(page.get_by_role("heading")).to_have_text("Choose your TV provider",
                                                             timeout=15_000)
            page.get_by_role("button", name="Spectrum").click()  # a second POST
            page.get_by_label("Username").fill("user1")
            page.get_by_label("Password").fill("pass1")
            page.get_by_role("button", name="Sign in").click()
            # Adobe Pass sends the browser back to the redirectUrl the worker gave it: this API.
            expect(page.get_by_role("heading")).to_have_text("You're signed in")
            assert page.url.startswith(f"{api.url}/landing?job={job_id}"), page.url
            context.close()
            assert wait_for_status(job_id, timeout=30) == "succeeded"
            assert client.get(f"/v1/jobs/{job_id}").json()["result"]["profile"]["mvpd"] \
                == "Spectrum"
    finally:
        api.stop()
        redis_client.delete(PUBLIC_URL_KEY)


def test_a_form_from_another_address_is_refused_saying_what_to_set(pass_env: str,
                                                                   activation_tries: None):
    settings = get_settings().model_copy(update={"public_url": "https://tv.example.com"})
    from api.app import create_app

    stream = io.StringIO()
    logs.configure(logging.INFO, stream=stream)
    try:
        with BackgroundServer(create_app(settings, tokens=[TOKEN])) as server:
            def post() -> httpx.Response:
                return httpx.post(server.url + "/activate", data={"code": "AB12CD3"},
                                  headers={"Origin": server.url, **BROWSER})

            refused = [post() for _ in range(3)]
    finally:
        logs.configure(logging.INFO)
    assert {r.status_code for r in refused} == {403}
    detail = refused[0].json()["detail"]
    assert server.url in detail and "https://tv.example.com" in detail
    assert "PASSFLOW_PUBLIC_URL" in detail
    logged = [json.loads(line) for line in stream.getvalue().splitlines()
              if "page_post_from_another_origin" in line]
    assert len(logged) == 1, logged  # once, not once per request
    assert logged[0]["origin"] == server.url


def test_unset_public_url_still_refuses_a_form_from_another_site(pass_env: str,
                                                                 activation_tries: None):
    settings = get_settings().model_copy(update={"public_url": None})
    from api.app import create_app

    with BackgroundServer(create_app(settings, tokens=[TOKEN])) as server:
        forged = httpx.post(server.url + "/activate", data={"code": "AB12CD3"},
                            headers={"Origin": "https://evil.example", **BROWSER})
        own = httpx.post(server.url + "/activate", data={"code": "!!"},
                         headers={"Origin": server.url, **BROWSER})
    assert forged.status_code == 403
    assert own.status_code == 400  # reached the page: the code is malformed, said as such
    assert "look like a code" in own.text
