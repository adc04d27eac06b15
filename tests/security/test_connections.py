"""The HTTP server attacked through its connections (issue 20): pipelined requests never read,
trailers without end, whole heads over the cap in one read, and thousands of slow clients, each
against `passflow api` in a child process whose memory and file handles are measured."""

from __future__ import annotations

import contextlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from passflow.serving import HEAD_TIMEOUT_S, MAX_PIPELINED
from tests.support import ApiProcess, wait_for

# The database plays no part: one backend.
pytestmark = [pytest.mark.slow,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

MIB = 1024 * 1024


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _send_until_closed(sock: socket.socket, chunks, limit: int) -> int:
    """Send chunks until the server closes (or `limit` bytes); the bytes it took."""
    sent = 0
    try:
        for chunk in chunks:
            sock.sendall(chunk)
            sent += len(chunk)
            if sent >= limit:
                break
    except OSError:  # reset or broken pipe: the server closed
        pass
    return sent


def livez_time(url: str) -> float:
    """Seconds /livez took to answer 200, from a fresh connection."""
    started = time.monotonic()
    assert httpx.get(url + "/livez", timeout=5).status_code == 200
    return time.monotonic() - started


def _answers(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


@pytest.fixture
def api(database_url: str, pass_env: str):
    proc = ApiProcess({})
    yield proc
    proc.stop()


def test_pipelined_requests_never_read_stay_bounded(api: ApiProcess, fault_report):
    request = b"GET /activate HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.settimeout(10)
        sent = _send_until_closed(sock, iter(lambda: request * 1000, None), 50 * MIB)
        answers = _answers(sock)
    after = _rss_mib(api.proc.pid)
    assert sent < 50 * MIB  # the server closed the connection long before
    assert b"429 Too Many Requests" in answers
    assert answers.count(b"HTTP/1.1 200") <= MAX_PIPELINED + 1
    assert after < 300, after
    assert httpx.get(api.url + "/livez", timeout=2).status_code == 200
    fault_report("pipelined GET /activate written without reading the answers",
                 f"closed after {sent // 1024} KiB with 429 (at most {MAX_PIPELINED} waiting); "
                 f"API at {after:.0f} MiB")


def test_endless_trailers_are_refused(api: ApiProcess, fault_report):
    head = (b"POST /activate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            b"9\r\ncode=AB12\r\n0\r\n")
    trailer = b"X-Trailer: " + b"a" * 1000 + b"\r\n"
    endless_line = b"X-Endless: " + b"b" * 65536
    sent_total = 0
    for lines in (iter(lambda: trailer * 64, None), iter(lambda: endless_line, None)):
        with socket.create_connection(("127.0.0.1", api.port)) as sock:
            sock.settimeout(10)
            sock.sendall(head)
            sent = _send_until_closed(sock, lines, 250 * MIB)
            answers = _answers(sock)
        sent_total += sent
        assert sent < 250 * MIB
        assert b"431" in answers, answers[:200]
    after = _rss_mib(api.proc.pid)
    assert after < 300, after
    fault_report("chunked POST /activate, then endless trailer lines (two connections)",
                 f"431 and closed after {sent_total // 1024} KiB in all; API at {after:.0f} MiB")


def test_whole_heads_over_the_cap_are_refused_in_one_read(api: ApiProcess, fault_report):
    big = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(big)  # one write: it may arrive in one read
        assert _answers(sock).startswith(b"HTTP/1.1 431")
    body = b"code=AB12CD3"
    almost = (b"POST /activate HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 +
              b"\r\nContent-Length: " + str(len(body) + 1).encode() + b"\r\n\r\n" + body)

    def hold() -> bytes:
        with socket.create_connection(("127.0.0.1", api.port)) as sock:
            sock.sendall(almost)
            return _answers(sock)[:12]

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: hold(), range(1000)))
    assert set(answers) == {b"HTTP/1.1 431"}, set(answers)
    after = _rss_mib(api.proc.pid)
    assert after < 200, after
    fault_report("1000 connections with 100 KB heads and almost-complete bodies",
                 f"each 431 at once; API at {after:.0f} MiB after")


def test_slow_clients_cannot_take_the_api_down(database_url: str, pass_env: str,
                                               fault_report):
    """4000 connections that send nothing or half a head, from many addresses, against an API
    allowed 1024 open files: /livez keeps answering within a second, and the slow ones are
    closed by the head deadline."""
    api = ApiProcess({}, file_limit=1024)
    held: list[socket.socket] = []
    worst = 0.0

    try:
        opened = 0
        for n in range(4000):
            source = f"127.0.{1 + n // 400}.{1 + n % 400 // 100}"  # 40 addresses, 100 each
            try:
                sock = socket.socket()
                sock.bind((source, 0))
                sock.settimeout(2)
                sock.connect(("127.0.0.1", api.port))
                if n % 4:
                    sock.sendall(b"GET /activate HTTP/1.1\r\nHost: x\r\nX-Half: ")
                held.append(sock)
                opened += 1
            except OSError:
                sock.close()
            if n % 250 == 0:
                worst = max(worst, livez_time(api.url))
        files = _open_files(api.proc.pid)
        assert files < 1024, files
        worst = max(worst, livez_time(api.url))
        # The deadline: every slow connection is closed, none is kept.
        wait_for(lambda: _open_files(api.proc.pid) < 100, timeout=HEAD_TIMEOUT_S + 10)
        assert api.proc.poll() is None
        worst = max(worst, livez_time(api.url))
    finally:
        for sock in held:
            sock.close()
        api.stop()
    assert worst < 1.0, worst
    fault_report("4000 idle and half-head connections from 40 addresses, API at 1024 files",
                 f"/livez at worst {worst * 1000:.0f} ms; at most {files} files open; all "
                 f"closed within {HEAD_TIMEOUT_S:g} s")


def _slow_body(source: str, port: int) -> socket.socket:
    """A whole POST head declaring a body, then a few bytes of it, and no more."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(2)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"POST /activate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\ncode=AB")
    return sock


def test_slow_bodies_cannot_take_the_api_down(database_url: str, pass_env: str, tmp_path,
                                              fault_report):
    """1000 connections from 4 addresses, each a whole head with Content-Length: 4000 and then
    almost nothing: a connection waiting for its body stays evictable, so /livez from a fresh
    address answers within a second throughout; the clients evicted or timed out are INFO
    lines, never a traceback or a 5xx counted for the alerts."""
    log = tmp_path / "api.log"
    api = ApiProcess({}, file_limit=1024, log=log)
    held: list[socket.socket] = []
    worst = 0.0

    try:
        rss_before = _rss_mib(api.proc.pid)
        for n in range(1000):
            with contextlib.suppress(OSError):
                held.append(_slow_body(f"127.0.9.{1 + n % 4}", api.port))
            if n % 100 == 0:
                worst = max(worst, livez_time(api.url))
        for _ in range(10):
            worst = max(worst, livez_time(api.url))
        rss_after = _rss_mib(api.proc.pid)
        metrics = httpx.get(api.url + "/metrics", headers=api.headers, timeout=10).text
    finally:
        for sock in held:
            sock.close()
        api.stop()
    text = log.read_text(errors="replace")
    assert worst < 1.0, worst
    assert "Traceback" not in text and "ClientDisconnect" not in text, text[-2000:]
    assert not [line for line in metrics.splitlines() if 'path="/activate"' in line
                and 'status="5' in line]
    assert rss_after - rss_before < 64, (rss_before, rss_after)
    fault_report("1000 slow bodies (a head, then 7 of 4000 bytes) from 4 addresses",
                 f"/livez at worst {worst * 1000:.0f} ms; RSS {rss_before:.0f} -> "
                 f"{rss_after:.0f} MiB; no traceback, no 5xx")


def test_upgrade_requests_are_refused_and_never_leak_a_place(api: ApiProcess, fault_report):
    """300 `Upgrade: websocket` requests from one address (more than its 256 places): each is
    answered 400 and closed, and the address is served afterwards (uvicorn's upgrade path would
    hand the connection to another protocol and never give its place back)."""
    answers = []
    for _ in range(300):
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            answers.append(_answers(sock).split(b"\r\n", 1)[0])
    assert set(answers) == {b"HTTP/1.1 400 Bad Request"}, set(answers)
    assert httpx.get(api.url + "/livez", timeout=5).status_code == 200
    fault_report("300 WebSocket upgrade requests from one address",
                 "each 400 and closed; the address served afterwards")


def test_a_refused_pipeline_is_one_short_line_not_a_traceback(database_url: str, pass_env: str,
                                                              tmp_path):
    """The request being answered when the pipeline is refused still ends: its answer finds
    the connection over, and the log says so in a line, not a traceback per connection."""
    log = tmp_path / "api.log"
    api = ApiProcess({}, log=log)
    try:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
                sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * (MAX_PIPELINED + 4))
                assert b"429 Too Many Requests" in _answers(sock)
        assert httpx.get(api.url + "/livez", timeout=5).status_code == 200
    finally:
        api.stop()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
