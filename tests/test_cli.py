"""The console script, run as a user would."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from passflow.serving import free_port
from tests.support import wait_for


def test_passflow_simulator_serves_its_openapi_page():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "simulator", "--port", str(port),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )

    def served_spec() -> dict | None:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).json()
        except httpx.TransportError:
            return None

    try:
        spec = wait_for(served_spec)
        assert "/api/v2/{serviceProvider}/decisions/authorize/{mvpd}" in spec["paths"]
        assert "/o/client/register" in spec["paths"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "cli", "demo"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


@pytest.mark.slow
def test_passflow_demo_walks_every_cookbook_step():
    done = _demo({})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "REF30=Permit" in out and "HBO=Deny (authorization_denied_by_mvpd)" in out
    assert "REF30=Permit [TempPass]" in out
    assert "Cablevision logout/interactive" in out
    assert "profile Spectrum (regular)" in out  # the second-screen device
    assert "profile Cablevision (platformSSO)" in out  # a second Fire TV app, no login
    assert "signed in with no login: a platformSSO profile" in out
    assert re.search(r"authorization\.requested +cnn-app-tablet +CNN +succeeded +CNN=Permit",
                     out)  # the second brand, added while the worker ran
    assert "14 jobs, 0 not succeeded" in out
    assert "stopped everything the demo started" in out
    assert "demo --keep" in out.split("\nNext\n", 1)[1]  # where to go next
    assert "operations console" in out.split("\nNext\n", 1)[1]


@pytest.mark.slow
def test_passflow_demo_keep_leaves_the_pages_and_history_to_look_at(tmp_path: Path):
    """`passflow demo --keep`: the activation page, the console and the history command it names
    answer with the settings file it names; Ctrl-C stops everything."""
    import os
    import signal

    errors = tmp_path / "demo.stderr"
    # Started with SIGINT ignored, as a background job of a script is (and as a child of a
    # process that ignores it): Ctrl-C must still stop it.
    ignoring = ("import signal, sys, runpy; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "sys.argv = ['passflow', 'demo', '--keep']; "
                "runpy.run_module('cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", ignoring], text=True,
                            stdout=subprocess.PIPE, stderr=errors.open("w"),
                            start_new_session=True)  # its worker too, if it must be killed
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Running until Ctrl-C"):
                break
        out = "".join(lines)
        page = re.search(r"(http://127\.0\.0\.1:\d+/activate)", out).group(1)
        assert httpx.get(page).status_code == 200
        env_file = Path(re.search(r"\. (\S+demo\.env);", out).group(1))
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        story = subprocess.run([sys.executable, "-m", "cli", "history", "--device",
                                "living-room-tv"], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **settings})
        assert story.returncode == 0, story.stderr
        assert "Permit" in story.stdout and "authorization_denied_by_mvpd" in story.stdout
        # The console it names, signed in with the token of the file it names.
        console = re.search(r"(http://127\.0\.0\.1:\d+/console) ", out).group(1)
        with httpx.Client(base_url=console.removesuffix("/console"), timeout=10) as browser:
            signed = browser.post("/console/sign-in",
                                  data={"token": settings["PASSFLOW_API_TOKEN"]})
            assert signed.status_code == 303, signed.text
            device = browser.get("/console/devices/living-room-tv")
            assert "Permit" in device.text and "authorization_denied_by_mvpd" in device.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            stack = subprocess.run(["py-spy", "dump", "--pid", str(proc.pid)],
                                   capture_output=True, text=True).stdout if shutil.which(
                "py-spy") else "(no py-spy)"
            os.killpg(proc.pid, signal.SIGKILL)  # nothing left behind, then say what it said
            said, _ = proc.communicate()
            pytest.fail("the demo did not stop within 60 s of Ctrl-C; its stdout: "
                        + said[-1500:] + "\nits stderr: "
                        + errors.read_text(errors="replace")[-3000:] + "\n" + stack[-4000:])
    assert proc.returncode == 0
    assert "stopped everything the demo started" in rest
    assert not env_file.exists()


@pytest.mark.slow
def test_passflow_demo_starts_its_own_broker_when_none_answers():
    done = _demo({"PASSFLOW_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started a private redis-server" in done.stdout
