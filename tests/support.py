"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from sqlalchemy import delete, select

import models.db
from models import FINAL_STATUSES, AuthSession, Job, Registration
from passflow.crypto import cipher_from_settings
from passflow.database import forget_identity
from passflow.events import EventIn
from passflow.serving import free_port, wait_until
from worker.adobe_pass import Device
from worker.runtime import reset_runtime

PG_ADMIN = os.environ.get(
    "PASSFLOW_TEST_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres password=postgres "
    "dbname=postgres")
PG_URL = os.environ.get(
    "PASSFLOW_TEST_PG_URL",
    "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/passflow_test")

# A browser's User-Agent: what the activation page needs of its visitors (it stands for
# X-Device-Info on the page's calls to Adobe Pass), and a browser device's at intake.
BROWSER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/126.0 Safari/537.36")
BROWSER = {"User-Agent": BROWSER_AGENT}
TOKEN = "tests-only-api-token-0123456789abcdef"  # the API token of the tests' API server

_ips = itertools.count(1)


def new_device(**info: object) -> Device:
    """A device with its own id and documentation-range IP (its own throttling bucket)."""
    n = next(_ips)
    return Device(
        id=f"device-{os.getpid()}-{n:04d}",
        ip=f"198.51.{100 + n // 250}.{n % 250 + 1}",
        port=40000 + n,
        info={"primaryHardwareType": "SetTopBox", "model": "TV 5th Gen", "version": "5",
              "osName": "tvOS", "osVersion": "17.1", "connectionType": "LAN", **info},
    )


def fresh_postgres(name: str | None = None) -> str:
    """Drop and create a database; returns its SQLAlchemy URL."""
    name = name or PG_URL.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    forget_identity(url)
    return url

def wait_for(predicate: Callable[[], object], *, timeout: float = 20.0,
             interval: float = 0.1) -> object:
    try:
        return wait_until(predicate, timeout=timeout, interval=interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def activation_codes(*job_ids: str) -> list[str]:
    """The activation codes of these jobs' sessions, as a user would read them on the TV (they
    are stored sealed)."""
    cipher = cipher_from_settings()
    with models.db.session_scope() as session:
        return [auth.code(cipher) for auth in session.scalars(
            select(AuthSession).where(AuthSession.job_id.in_(job_ids)))]


def job_status(job_id: str) -> str:
    with models.db.session_scope() as session:
        return session.get(Job, job_id).status


def wait_for_status(job_id: str, *statuses: str, timeout: float = 20.0) -> str:
    wanted = set(statuses) or {s.value for s in FINAL_STATUSES}

    def reached() -> str | None:
        status = job_status(job_id)
        return status if status in wanted else None

    return wait_for(reached, timeout=timeout)  # type: ignore[return-value]


def set_faults(sim, **knobs: object) -> None:
    """Change some of the simulator's fault knobs, keeping the others."""
    faults = sim.get("/_sim/faults").json()
    sim.put("/_sim/faults", json={**faults, **knobs}).raise_for_status()


def forget_registration() -> None:
    """Start without cached credentials (the simulator was reset too)."""
    with models.db.session_scope() as session:
        session.execute(delete(Registration))
    reset_runtime()


def device_json(device: Device) -> dict[str, object]:
    """The device as an event carries it."""
    return {"id": device.id, "ip": device.ip, "port": device.port, "info": dict(device.info)}


def send_event(api, type_: str, device, **fields) -> str:
    """POST an event for the device through the API (a client with a token); its job id."""
    answer = api.post("/v1/events", json={"event_id": f"evt-{uuid.uuid4()}", "type": type_,
                                          "device": device_json(device), **fields})
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def screenshot(page, name: str) -> None:
    """A browser test's picture of the page, in tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def make_event(event_id: str, type_: str, device, **fields) -> EventIn:
    return EventIn.model_validate({
        "event_id": event_id, "type": type_,
        "device": {"id": device.id, "ip": device.ip, "port": device.port,
                   "info": dict(device.info)},
        **fields,
    })


def child_env(extra: dict[str, str | None] | None) -> dict[str, str]:
    """This process' environment with `extra` over it; a None value removes the variable."""
    env = {**os.environ, **(extra or {})}
    return {k: v for k, v in env.items() if v is not None}


class WorkerProcess:
    """`passflow worker` in a subprocess, as operations run it."""

    def __init__(self, name: str, *, concurrency: int = 4, queues: str | None = None,
                 env: dict[str, str | None] | None = None, loglevel: str = "WARNING",
                 pool: str | None = "threads", hostname: bool = True):
        argv = [sys.executable, "-m", "cli", "worker", *(["--pool", pool] if pool else []),
                "--concurrency", str(concurrency),
                *(["--hostname", f"{name}@%h"] if hostname else []),
                "--log-level", loglevel]
        if queues:
            argv += ["--queues", queues]
        self.name = name
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"passflow-{name}-{os.getpid()}.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env(env))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def said(self, word: str) -> bool:
        """Whether the worker's log mentions `word` (case-insensitive)."""
        self._log.flush()
        return word.lower() in self.log.read_text(errors="replace").lower()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


class RedisServer:
    """A private redis-server on its own port, to stop and start at will."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), timeout=10)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved (it runs with no persistence)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def private_broker() -> Iterator[str]:
    """A Redis of its own for the test (no worker uses it), gone after: its URL."""
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class ApiProcess:
    """`passflow api` in a subprocess."""

    def __init__(self, env: dict[str, str | None] | None = None, token: str = TOKEN, *,
                 file_limit: int | None = None, log: Path | None = None):
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "api", "--port", str(self.port),
             "--log-level", "warning" if log is None else "info"],
            env=child_env({**(env or {}), "PASSFLOW_API_TOKEN": token}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if log is None else log.open("wb"),
            preexec_fn=None if file_limit is None else lambda: resource.setrlimit(
                resource.RLIMIT_NOFILE, (file_limit, file_limit)))
        import httpx

        def up() -> bool:
            try:
                httpx.get(self.url + "/livez", timeout=1)
                return True
            except httpx.TransportError:
                assert self.proc.poll() is None, "passflow api exited"
                return False

        wait_for(up, timeout=20)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class TcpProxy:
    """A TCP relay to `target` on a port of its own; `cut()` closes it and every connection
    through it, as a database host that drops off the network would look to its clients."""

    def __init__(self, target: tuple[str, int]):
        import socket
        import threading

        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._open = True
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    def _accept(self) -> None:
        import socket
        import threading

        while self._open:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        import socket

        self._open = False
        # shutdown() wakes the thread blocked in accept(); close() alone leaves it listening.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
