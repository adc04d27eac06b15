"""`python -m bench.ab --base REV`: this tree's code against revision REV's, side by side.

One stack (the simulator with 50 ms upstream latency, PostgreSQL, Redis) as `make bench` starts
it; then, in each round, the API and the workers of each side in turn (REV's from a git worktree)
at the same offered loads, each load on devices of its own. The order of the two sides alternates
from round to round, so that a machine slowing down during the run favours neither. Prints, per
load, each side's CPU per decision by part and its added latency: the median of the rounds with
their range, and this tree's figure over REV's. Both revisions must have the same database
schema (one database serves both). For a change to the hot path before it lands; not a test,
and not part of `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import create_engine

from bench.run import LOOP_DEVICES, authorization, baseline, seed_profiles, spread
from bench.stack import PG_URL, Stack

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("API", "workers", "PostgreSQL", "Redis")  # passflow's own (bench.run)
WARMUP_S = 2.0  # authorization's unmeasured seconds at each load


def _worktree(rev: str, into: Path) -> Path:
    """A checkout of `rev` beside this tree; SystemExit with git's own line if there is none."""
    path = into / "base"
    made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                          capture_output=True, text=True)
    if made.returncode != 0:
        lines = made.stderr.strip().splitlines() or ["git worktree add failed"]
        raise SystemExit(f"bench.ab: no checkout of {rev!r}: {lines[-1]}")
    return path


def _row(rate: float, runs: dict[str, list[dict]]) -> str:
    cells = [f"{rate:.0f}"]
    this, base = runs["this tree"], runs["base"]
    for name in (*PARTS, "own"):
        values = {side: [r["cpu_ms"][name] if name != "own" else
                         sum(r["cpu_ms"][p] for p in PARTS) for r in rows]
                  for side, rows in (("this", this), ("base", base))}
        ratio = sorted(values["this"])[len(this) // 2] / max(
            1e-9, sorted(values["base"])[len(base) // 2])
        cells.append(f"{spread(values['this'], digits=2)} / {spread(values['base'], digits=2)}"
                     + (f" ({ratio:.2f})" if name == "own" else ""))
    for q in ("p50", "p99"):
        cells.append(f"{spread([r[q] for r in this], scale=1000)} / "
                     f"{spread([r[q] for r in base], scale=1000)} ms")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="HEAD", help="the revision compared with this tree")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--loads", default="50,200", help="offered plays/s, comma-separated")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds per load")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    loads = [float(x) for x in args.loads.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="passflow-ab-"))
    sides = {"this tree": None, "base": _worktree(args.base, workdir)}
    stack = Stack(latency_ms=50, poll_interval_s=15, workdir=workdir).start()
    runs: dict[float, dict[str, list[dict]]] = {load: {side: [] for side in sides}
                                                for load in loads}
    try:
        engine = create_engine(PG_URL)
        per_side = round(sum(loads) * (args.duration + WARMUP_S))
        seed_profiles(stack.sim_url, 0, per_side * 2 * args.rounds)
        # Added latency is measured against one call's time on the idle simulator.
        seed_profiles(stack.sim_url, LOOP_DEVICES, 100)
        upstream_s = asyncio.run(baseline(stack.sim_url, LOOP_DEVICES, 0.5, 1))["idle_p50"]
        first = 0
        for n in range(args.rounds):
            order = list(sides.items())
            for side, code_dir in order if n % 2 == 0 else reversed(order):
                stack.code_dir = code_dir
                stack.restart_api()
                stack.start_workers(args.workers)
                for load in loads:
                    result = authorization(stack, engine, first, load, args.duration,
                                           upstream_s, warmup_s=WARMUP_S)
                    first += result["devices"]
                    runs[load][side].append(result)
                    print(f"round {n + 1}, {side}, {load:.0f}/s: "
                          f"{sum(result['cpu_ms'][p] for p in PARTS):.2f} ms of CPU, "
                          f"p99 {result['p99'] * 1000:.0f} ms", flush=True)
    finally:
        stack.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(sides["base"])], check=False, capture_output=True)
    print(f"\nThis tree / {args.base}, {args.rounds} rounds, {args.workers} workers: CPU per "
          "decision in ms (median and range; passflow's own = API + workers + PostgreSQL + "
          "Redis, with this tree's over the base's), added latency\n")
    print("| offered/s | " + " | ".join(PARTS) + " | own | added p50 | added p99 |")
    print("| --- " * (len(PARTS) + 4) + "|")
    for load in loads:
        print(_row(load, runs[load]))


if __name__ == "__main__":
    main()
