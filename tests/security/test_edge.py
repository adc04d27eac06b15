"""The public edge: `passflow api` behind nginx configured as deploy/nginx/passflow.conf.template
(the configuration Compose runs), with the attacks of tests/security/test_connections.py sent
through it. nginx is Debian's (`make test` installs it, .ci/setup)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from passflow.serving import free_port
from tests.support import BROWSER, ApiProcess, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "passflow.conf.template"


def _nginx() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(found).exists(), "nginx is missing: `make test` installs it (.ci/setup)"
    return found


class Edge:
    """nginx with the template rendered as Compose renders it (envsubst of its variables)."""

    def __init__(self, upstream: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rendered = TEMPLATE.read_text().replace("${PASSFLOW_UPSTREAM}", upstream).replace(
            "${PASSFLOW_EDGE_PORT}", f"127.0.0.1:{self.port}")
        (workdir / "passflow.conf").write_text(rendered)
        temp = " ".join(f"{kind}_temp_path {workdir / kind};" for kind in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (workdir / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; worker_rlimit_nofile 8192;\n"
            f"pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'} warn;\n"
            f"events {{ worker_connections 4096; }}\n"
            f"http {{ access_log off; {temp} include {workdir / 'passflow.conf'}; }}\n")
        self.proc = subprocess.Popen([_nginx(), "-p", str(workdir), "-c",
                                      str(workdir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def up() -> bool:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(self.url + "/livez", timeout=1).status_code == 200
            return False

        wait_for(up, timeout=20)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def edge(database_url: str, pass_env: str, tmp_path: Path) -> Iterator[tuple[Edge, ApiProcess]]:
    api = ApiProcess({"PASSFLOW_TRUSTED_PROXIES": '["127.0.0.1"]'}, log=tmp_path / "api.log")
    front = Edge(f"127.0.0.1:{api.port}", tmp_path)
    yield front, api
    front.stop()
    api.stop()


def test_slow_bodies_through_the_edge_never_reach_the_api(edge, fault_report):
    """1000 slow bodies from 4 addresses: nginx reads bodies itself (64 connections an
    address), so /livez from a fresh address answers within a second and the API holds none of
    them."""
    front, api = edge
    held, worst = [], 0.0
    try:
        for n in range(1000):
            with contextlib.suppress(OSError):
                sock = socket.socket()
                sock.bind((f"127.0.9.{1 + n % 4}", 0))
                sock.settimeout(2)
                sock.connect(("127.0.0.1", front.port))
                sock.sendall(b"POST /activate HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n\r\ncode=AB")
                held.append(sock)
            if n % 100 == 0:
                started = time.monotonic()
                probe = httpx.get(front.url + "/livez", timeout=5)
                assert probe.status_code == 200
                worst = max(worst, time.monotonic() - started)
        api_files = len(list(Path(f"/proc/{api.proc.pid}/fd").iterdir()))
    finally:
        for sock in held:
            sock.close()
    assert worst < 1.0, worst
    assert api_files < 100, api_files  # the bodies stayed at the edge
    fault_report("1000 slow bodies through nginx (4 addresses)",
                 f"/livez at worst {worst * 1000:.0f} ms; the API held {api_files} files")


def test_upgrades_are_refused_at_the_edge(edge, fault_report):
    front, _ = edge
    statuses = set()
    for _ in range(300):
        answer = httpx.get(front.url + "/livez", headers={
            "Connection": "Upgrade", "Upgrade": "websocket"}, timeout=5)
        statuses.add(answer.status_code)
    assert statuses == {400}
    assert httpx.get(front.url + "/livez", timeout=5).status_code == 200
    fault_report("300 upgrade requests through nginx", "each 400; the address served after")


def test_a_forged_forwarded_address_is_replaced_by_the_edge(edge, redis_client: redis.Redis):
    """The API believes the edge, and the edge writes the peer it saw: a client's own
    X-Forwarded-For never reaches the API (the tries of a wrong code count against the
    client's real address)."""
    front, _ = edge
    for key in redis_client.scan_iter("passflow:activate:tries:*"):
        redis_client.delete(key)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.77")) as client:
        answer = client.post(front.url + "/activate", data={"code": "WRONG01"},
                             headers={**BROWSER, "X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert answer.status_code in (400, 503), answer.text
    keys = {k.decode() for k in redis_client.scan_iter("passflow:activate:tries:*")}
    assert any("127.0.0.77" in k for k in keys) and not any("203.0.113.9" in k for k in keys)
