"""A batch's upstream calls two ways, side by side: threads, each with its small httpx.Client
(what the workers do: worker.runtime.Runtime.call_all, AdobePass' client per thread), against
one asyncio event loop with httpx.AsyncClient, as one client or as several small ones (lanes).

The measure is this process' CPU per call and the wall time of a batch, for batches of 1 to 50
authorization calls to the simulator (50 ms upstream latency, each call a device of its own, so
nothing is throttled). Three runs in turn; each figure is their median, with their range.

    python -m bench.calls          # about 5 minutes; prints a Markdown table
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.run import MVPD, SP, device, seed_profiles
from bench.stack import Stack
from simulator.fixtures import DEMO_SOFTWARE_STATEMENT
from worker.adobe_pass.headers import device_headers

BATCHES = (1, 5, 20, 50)
CALL_THREADS = 24  # PASSFLOW_CALL_THREADS' default
LANES = 13  # small async clients, enough for 50 calls at 4 connections each


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Calls:
    def __init__(self, sim_url: str):
        self.url = f"{sim_url}/api/v2/{SP}/decisions/authorize/{MVPD}"
        info = {"X-Device-Info": device_headers(device(0))["X-Device-Info"]}
        with httpx.Client(base_url=sim_url, timeout=30) as client:
            creds = client.post("/o/client/register", headers=info,
                                json={"software_statement": DEMO_SOFTWARE_STATEMENT}).json()
            self.token = client.post("/o/client/token", headers=info, data={
                "client_id": creds["client_id"], "client_secret": creds["client_secret"],
                "grant_type": "client_credentials"}).json()["access_token"]
        self._devices = itertools.count(1)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(CALL_THREADS)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._one = httpx.AsyncClient(timeout=30, limits=httpx.Limits(
            max_connections=100, max_keepalive_connections=100))
        self._lanes = [httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=4))
                       for _ in range(LANES)]

    def _headers(self) -> dict[str, str]:
        return {**device_headers(device(next(self._devices))),
                "Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def _sync_client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(
                timeout=30, limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))
        return client

    def threads(self, n: int) -> None:
        def one() -> int:
            return self._sync_client().post(self.url, json={"resources": ["REF30"]},
                                            headers=self._headers()).status_code

        if n == 1:  # a lone call runs in the task's own thread, as in Runtime.call_all
            codes = [one()]
        else:
            codes = [f.result() for f in [self._pool.submit(one) for _ in range(n)]]
        assert codes == [200] * n, codes

    def _gather(self, n: int, client_of: Callable[[int], httpx.AsyncClient]) -> None:
        async def batch() -> list[int]:
            answers = await asyncio.gather(*(client_of(i).post(
                self.url, json={"resources": ["REF30"]}, headers=self._headers())
                for i in range(n)))
            return [a.status_code for a in answers]

        codes = asyncio.run_coroutine_threadsafe(batch(), self._loop).result()
        assert codes == [200] * n, codes

    def one_async_client(self, n: int) -> None:
        self._gather(n, lambda _: self._one)

    def async_lanes(self, n: int) -> None:
        self._gather(n, lambda i: self._lanes[i % LANES])


def measure(way: Callable[[int], None], n: int) -> tuple[float, float]:
    """(CPU ms per call, wall ms per batch) over about 400 calls, after one batch not
    measured."""
    way(n)
    reps = max(8, 400 // n)
    cpu, started = _cpu_s(), time.perf_counter()
    for _ in range(reps):
        way(n)
    return ((_cpu_s() - cpu) * 1000 / (reps * n),
            (time.perf_counter() - started) * 1000 / reps)


def _figure(values: list[float], digits: int) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stack = Stack(latency_ms=args.latency_ms, poll_interval_s=15,
                  workdir=Path(tempfile.mkdtemp(prefix="passflow-calls-"))).start()
    try:
        seed_profiles(stack.sim_url, 1, 20_000)
        calls = Calls(stack.sim_url)
        ways = {"threads, a small httpx.Client each (passflow)": calls.threads,
                "one httpx.AsyncClient": calls.one_async_client,
                f"asyncio, {LANES} small httpx.AsyncClient": calls.async_lanes}
        figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for n in BATCHES:
                for name, way in ways.items():
                    figures.setdefault((name, n), []).append(measure(way, n))
    finally:
        stack.stop()
    print(f"Upstream calls of one batch, {args.latency_ms:.0f} ms upstream latency: this "
          f"process' CPU per call and wall time per batch, median of {args.rounds} runs "
          "(range)\n")
    print("| calls in the batch | way | CPU per call | wall per batch |")
    print("| --- | --- | --- | --- |")
    for n in BATCHES:
        for name in ways:
            runs = figures[(name, n)]
            print(f"| {n} | {name} | {_figure([c for c, _ in runs], 2)} ms | "
                  f"{_figure([w for _, w in runs], 0)} ms |")


if __name__ == "__main__":
    main()
