"""The processes a benchmark runs: simulator, API, workers (they take turns sweeping), each its
own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import redis

from passflow.serving import free_port
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/passflow_bench"
# Redis databases of the bench's own, which it empties: the tests use 9 to 15 (tests/conftest.py),
# so a bench and a test run on one machine leave each other alone.
REDIS_URL = "redis://127.0.0.1:6379/4"
ONE_TASK_BROKER = "redis://127.0.0.1:6379/5"
PROFILE_BROKER = "redis://127.0.0.1:6379/6"  # bench.profile
TOKEN = "bench-only-api-token-0123456789abcdef"


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used, resident memory MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if line.startswith("VmRSS:"))
    return cpu, rss_kb / 1024


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def server_cpu_s(command: str) -> float:
    """CPU seconds of a server's processes (`postgres`, `redis-server`), those that ended
    included: every live process of that name, plus what its root process has collected from
    children it reaped (a PostgreSQL backend of a closed connection)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != command:
                continue
            pids[int(entry.name)] = _stat(int(entry.name))
        except OSError:
            continue
    for fields in pids.values():
        total += int(fields[11]) + int(fields[12])
        if int(fields[1]) not in pids:  # the root: its reaped children's time
            total += int(fields[13]) + int(fields[14])
    return total / ticks


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def pin(pid: int, cpus: set[int]) -> None:
    """Keep a process, all its threads and its children (and theirs) on `cpus`."""
    for task in Path(f"/proc/{pid}/task").iterdir() if Path(f"/proc/{pid}/task").exists() else ():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), cpus)
    for child in children(pid):
        pin(child, cpus)


class PostgresCluster:
    """A PostgreSQL cluster of its own on a free port (Debian's pg_createcluster, as root),
    dropped at the end: the bench pins one to chosen cores (PostgreSQL on a separate instance),
    the fault suite restarts one without touching the server other tests share. `fast`: no
    fsync (tests); the bench's keeps PostgreSQL's defaults, as the shared server has them."""

    def __init__(self, name: str, *, fast: bool = False):
        self.version = sorted(os.listdir("/etc/postgresql"),
                              key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])[-1]
        self.cluster = f"passflow-{name}-{os.getpid()}"
        self.port = free_port()
        self.fast = fast

    def _ctl(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresCluster:
        options = ["-o", "fsync=off", "-o", "synchronous_commit=off"] if self.fast else []
        try:
            self._ctl("pg_createcluster", self.version, self.cluster, "--port", str(self.port),
                      *options, "--", "--auth=trust")
            self._ctl("pg_ctlcluster", "--skip-systemctl-redirect", self.version,
                      self.cluster, "start")
        except subprocess.CalledProcessError as exc:
            self.drop()
            raise RuntimeError(f"{' '.join(exc.cmd)}: {exc.stderr!r}") from None
        return self

    def database(self, name: str) -> str:
        """A new database of the cluster: its SQLAlchemy URL."""
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        self._ctl("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.cluster,
                  "restart")

    def pin(self, cpus: set[int]) -> None:
        """The server and every backend on `cpus` (backends forked later inherit it)."""
        data = Path("/var/lib/postgresql") / self.version / self.cluster / "postmaster.pid"
        pin(int(data.read_text().split()[0]), cpus)

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.cluster],
                       capture_output=True, timeout=120)


class Stack:
    def __init__(self, *, latency_ms: float, poll_interval_s: float, workdir: Path):
        self.workdir = workdir
        self.sim_port, self.api_port = free_port(), free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.latency_ms = latency_ms
        self.env = {
            **os.environ,
            "PASSFLOW_DATABASE_URL": PG_URL,
            "PASSFLOW_BROKER_URL": REDIS_URL,
            "PASSFLOW_PASS_BASE_URL": self.sim_url,
            "PASSFLOW_SECRET_KEY": "bench-only-secret-key-0123456789abcdef",
            "PASSFLOW_SOFTWARE_STATEMENT": DEMO_SOFTWARE_STATEMENT,
            "PASSFLOW_API_TOKEN": TOKEN,
            "PASSFLOW_PUBLIC_URL": self.api_url,
            "PASSFLOW_POLL_INTERVAL_S": str(poll_interval_s),
            # 4 workers of 12 threads + the API stay under PostgreSQL's 100 connections.
            "PASSFLOW_DB_POOL_SIZE": "6",
            "PASSFLOW_DB_MAX_OVERFLOW": "8",
        }
        # Where the API and the workers started next take passflow's code from (bench.ab: a
        # git worktree of another revision); None: this tree.
        self.code_dir: Path | None = None
        self.workers: list[subprocess.Popen] = []
        self.procs: list[subprocess.Popen] = []
        self.one_task_url, self.one_task_api_pid = "", 0  # while the baseline's processes run

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115
        code = {"PYTHONPATH": str(self.code_dir)} if self.code_dir else {}
        return subprocess.Popen([sys.executable, "-m", "cli", *args],
                                env={**self.env, **code, **(env or {})}, cwd=self.code_dir,
                                stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> Stack:
        name = PG_URL.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        redis.Redis.from_url(REDIS_URL).flushdb()
        redis.Redis.from_url(ONE_TASK_BROKER).flushdb()
        subprocess.run([sys.executable, "-m", "cli", "db", "upgrade"], env=self.env,
                       check=True, capture_output=True)
        sim = self._spawn("simulator", "simulator", "--port", str(self.sim_port),
                          "--log-level", "warning")
        _wait_http(self.sim_url + "/openapi.json", sim)
        faults = httpx.get(self.sim_url + "/_sim/faults").json()
        httpx.put(self.sim_url + "/_sim/faults",
                  json={**faults, "latency_ms": self.latency_ms}).raise_for_status()
        api = self._spawn("api", "api", "--port", str(self.api_port), "--log-level", "warning")
        _wait_http(self.api_url + "/livez", api)
        self.procs += [sim, api]
        self.sim_pid, self.api_pid = sim.pid, api.pid
        return self

    def use_database(self, url: str) -> None:
        """Migrate `url` and serve from it: the API restarts on it, workers started next use
        it."""
        self.env["PASSFLOW_DATABASE_URL"] = url
        subprocess.run([sys.executable, "-m", "cli", "db", "upgrade"], env=self.env,
                       check=True, capture_output=True)
        self.restart_api()

    def restart_api(self, **env: str) -> None:
        """The API again, on the stack's settings with `env` over them (for it alone)."""
        old = next(proc for proc in self.procs if proc.pid == self.api_pid)
        old.terminate()
        old.wait(timeout=20)
        api = self._spawn("api", "api", "--port", str(self.api_port), "--log-level", "warning",
                          env=env)
        _wait_http(self.api_url + "/livez", api)
        self.procs = [proc for proc in self.procs if proc is not old] + [api]
        self.api_pid = api.pid

    def pin(self, cpus: set[int]) -> None:
        """The simulator, the API, the workers and this process (the load generator) on
        `cpus`."""
        for pid in (self.sim_pid, self.api_pid, *(w.pid for w in self.workers), os.getpid()):
            pin(pid, cpus)

    def start_workers(self, count: int, *, pool: str = "threads", concurrency: int = 12) -> None:
        self.stop_workers()
        for i in range(count):
            args = ["worker", "--pool", pool, "--concurrency", str(concurrency),
                    "--hostname", f"bench{i}@%h", "--log-level", "warning"]
            if pool == "gevent":
                # gevent must patch the standard library before anything else is imported.
                command = [sys.executable, "-c", "from gevent import monkey; monkey.patch_all(); "
                           "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))",
                           *args]
                log = open(self.workdir / f"worker{i}.log", "wb")  # noqa: SIM115
                self.workers.append(subprocess.Popen(command, env=self.env, stdout=log,
                                                     stderr=subprocess.STDOUT))
            else:
                self.workers.append(self._spawn(f"worker{i}", *args))
        time.sleep(4)  # connect, register with the broker

    def start_one_task_workers(self, count: int, *, concurrency: int = 12) -> None:
        """The baseline's workers (bench.one_task), in place of passflow's."""
        self.stop_workers()
        env = {**self.env, "BENCH_ONE_TASK_SIMULATOR": self.sim_url,
               "BENCH_ONE_TASK_DATABASE": PG_URL, "BENCH_ONE_TASK_BROKER": ONE_TASK_BROKER}
        for i in range(count):
            log = open(self.workdir / f"one-task{i}.log", "wb")  # noqa: SIM115
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.one_task", "worker",
                 "--pool", "threads", "--concurrency", str(concurrency), "--hostname",
                 f"one-task{i}@%h", "--loglevel", "warning", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"],
                env=env, stdout=log, stderr=subprocess.STDOUT))
        # Its API: its CPU counted as an API's (api_cpu_s); stopped with the workers.
        log = open(self.workdir / "one-task-api.log", "wb")  # noqa: SIM115
        port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.one_task:api", "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        self.one_task_url, self.one_task_api_pid = f"http://127.0.0.1:{port}", api.pid
        _wait_http(self.one_task_url + "/openapi.json", api)
        self.workers.append(api)
        time.sleep(4)  # connect, register with the broker

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers = []
        self.one_task_url, self.one_task_api_pid = "", 0

    def worker_stats(self) -> tuple[float, float]:
        """CPU seconds and resident MiB of the workers, their pool's child processes included."""
        cpu = rss = 0.0
        for proc in self.workers:
            if proc.pid == self.one_task_api_pid:  # counted as an API (api_cpu_s)
                continue
            for pid in [proc.pid, *children(proc.pid)]:
                c, r = proc_stats(pid)
                cpu += c
                rss += r
        return cpu, rss

    def api_cpu_s(self) -> float:
        """CPU seconds of the API processes: passflow's, and the baseline's while it runs."""
        return sum(proc_stats(pid)[0] for pid in (self.api_pid, self.one_task_api_pid) if pid)

    def stop(self) -> None:
        """Every process the run started ends here, killed if it does not stop in time."""
        self.stop_workers()
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # A pool's child that outlived its parent (none expected): the run leaves nothing behind.
        for pid in children(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
