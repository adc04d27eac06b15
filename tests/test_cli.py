"""The console script, run as a user would."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_passflow_simulator_serves_its_openapi_page():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "passflow.cli", "simulator", "--port", str(port),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.1)
        assert "/api/v2/{serviceProvider}/decisions/authorize/{mvpd}" in spec["paths"]
        assert "/o/client/register" in spec["paths"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_passflow_demo_walks_the_cookbook():
    done = subprocess.run([sys.executable, "-m", "passflow.cli", "demo"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "step 6  authorize REF30: Permit" in done.stdout
    assert "step 7  logout" in done.stdout
