"""`python -m bench.profile`: where a batch of plays spends its CPU, in one process.

Starts the simulator and the bench database like `make bench`, then, in this process, accepts
authorization events with `submit_many` and runs their step with `engine.run` (the code the API
and the workers run, without the broker: no worker listens to the messages sent here). Prints
the CPU per play of each part of a batch and, for a batch of one (all of it on this thread),
each library's share under cProfile with a CPU clock. Not a test, and not part of `make bench`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import logging
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.run import MVPD, SP, device, seed_profiles
from bench.stack import PROFILE_BROKER, Stack

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def timing(owner: object, name: str, spent: collections.Counter[str]) -> Iterator[None]:
    """Add the process CPU time of every call of `owner.name` to `spent[name]`."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        started = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] += time.process_time() - started

    setattr(owner, name, timed)
    try:
        yield
    finally:
        setattr(owner, name, original)


class Plays:
    def __init__(self) -> None:
        from worker import dispatch, engine, jobs

        self.dispatch, self.engine, self.jobs = dispatch, engine, jobs
        self.next_device = 0

    def batch(self, size: int) -> Callable[[], str]:
        """Accept `size` plays now; return what runs their batch."""
        from passflow.events import EventIn

        events = [EventIn.model_validate({
            "event_id": f"profile-{uuid.uuid4()}", "type": "authorization.requested",
            "device": {"id": device(i).id, "ip": device(i).ip, "port": device(i).port,
                       "info": dict(device(i).info)},
            "mvpd": MVPD, "resource": "REF30"})
            for i in range(self.next_device, self.next_device + size)]
        self.next_device += size
        accepted = self.dispatch.submit_many(events, default_service_provider=SP)
        job_ids = [a.job_id for a in accepted]
        # Run at once, as a worker that keeps up does: a batch of exactly `size`.
        return lambda: self.engine.run("decisions.authorize", job_ids, owner=str(uuid.uuid4()))


def profile(plays: Plays, size: int, rounds: int, dump: str | None = None) -> None:
    from worker.runtime import runtime

    for _ in range(3):  # connections, the access token, compiled statements
        plays.batch(size)()
    spent: collections.Counter[str] = collections.Counter()
    total = 0.0
    with timing(plays.jobs, "claim_many", spent), \
            timing(plays.jobs, "settle", spent), \
            timing(runtime(), "call_all", spent):
        for _ in range(rounds):
            run = plays.batch(size)
            started = time.process_time()
            result = run()
            total += time.process_time() - started
            assert list(result.values()) == ["succeeded"] * size, result
    count = rounds * size
    rows = {"claim": spent["claim_many"], "calls (HTTP, throttle)": spent["call_all"],
            "completion": spent["settle"]}
    rows["load, plan, apply, logs, metrics"] = total - sum(rows.values())
    print(f"\nbatches of {size}: {total * 1000 / count:.2f} ms of CPU per play "
          "(the process' CPU, call threads included)")
    for name, seconds in rows.items():
        print(f"  {name:28} {seconds * 1000 / count:6.2f} ms")
    if size != 1:
        return
    profiler = cProfile.Profile(time.thread_time)  # CPU time, this thread only
    for _ in range(rounds):
        profiler.runcall(plays.batch(size))
    if dump:
        profiler.dump_stats(dump)
    shares: collections.Counter[str] = collections.Counter()
    for (file, _, _), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        own = row[2]
        if "site-packages/" in file:
            shares[file.split("site-packages/")[1].split("/")[0]] += own
        elif file.startswith(str(ROOT)):
            shares["passflow"] += own
        else:
            shares["standard library and builtins"] += own
    whole = sum(shares.values()) or 1.0
    print("  by library (cProfile):",
          ", ".join(f"{name} {100 * s / whole:.0f}%" for name, s in shares.most_common(9)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10", help="batch sizes, comma-separated")
    parser.add_argument("--plays", type=int, default=200, help="plays measured per size")
    parser.add_argument("--dump", help="write the batch of one's profile here (pstats)")
    args = parser.parse_args()
    stack = Stack(latency_ms=50, poll_interval_s=15,
                  workdir=Path(tempfile.mkdtemp(prefix="passflow-profile-"))).start()
    try:
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("PASSFLOW_")})
        os.environ["PASSFLOW_BROKER_URL"] = PROFILE_BROKER
        from passflow import logs

        logs.configure(logging.WARNING)
        seed_profiles(stack.sim_url, 0, 20_000)
        plays = Plays()
        for size in (int(x) for x in args.sizes.split(",")):
            profile(plays, size, max(1, args.plays // size), args.dump)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
