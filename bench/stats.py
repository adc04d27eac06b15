"""`python -m bench.stats`: what the console's figures cost over a large store.

Seeds a database of its own on the local PostgreSQL with ROWS step runs
and ROWS decisions spread over 31 days, then times each `/v1/stats/...` figure over the whole
31 days: cold (computed), then warm (kept, api.stats.CACHE_S). Prints a table. Not a test, and
not part of `make bench`; its figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

import psycopg

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
DATABASE = "passflow_bench_stats"


def _database() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{DATABASE}"


_SEED = """
INSERT INTO devices (id, last_info, created_at, updated_at)
  SELECT 'bs-' || g, '{}', now(), now() FROM generate_series(1, 200) g;
INSERT INTO events (id, event_id, type, payload, received_at)
  SELECT 'e' || g, 'bench-stats-' || g, 'authorization.requested', '{}', now()
  FROM generate_series(1, %(jobs)s) g;
INSERT INTO jobs (id, event_pk, type, status, service_provider, device_id, mvpd, result, state,
                  created_at, updated_at)
  SELECT 'j' || g, 'e' || g, 'authorization.requested', 'succeeded', 'REF30',
         'bs-' || (g %% 200 + 1), 'Cablevision', '{}', '{}', now(), now()
  FROM generate_series(1, %(jobs)s) g;
INSERT INTO job_steps (job_id, step, status, attempts, failures, rate_limited, started_at,
                       finished_at)
  SELECT 'j' || (g / 3 + 1),
         (ARRAY['decisions.authorize', 'profiles.poll', 'sessions.create'])[g %% 3 + 1],
         'succeeded', 1, 0, 0, now() - (g::float / %(rows)s) * interval '31 days',
         now() - (g::float / %(rows)s) * interval '31 days'
           + (20 + g %% 500) * interval '1 millisecond'
  FROM generate_series(0, %(rows)s - 1) g;
INSERT INTO decisions (job_id, device_id, service_provider, mvpd, kind, resource, decision,
                       error_code, created_at)
  SELECT 'j' || (g / 50 + 1), 'bs-' || ((g / 50 + 1) %% 200 + 1), 'REF30', 'Cablevision',
         'authorize', 'R' || (g %% 50), CASE WHEN g %% 7 = 0 THEN 'Deny' ELSE 'Permit' END,
         CASE WHEN g %% 7 = 0 THEN 'authorization_denied_by_mvpd' END,
         now() - (g::float / %(rows)s) * interval '31 days'
  FROM generate_series(0, %(rows)s - 1) g;
ANALYZE;
"""


def _seed(url: str, rows: int) -> None:
    """ROWS step runs (three steps a job) and ROWS decisions over the last 31 days."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in _SEED.split(";"):
            if statement.strip():
                conn.execute(statement, {"rows": rows, "jobs": rows // 3 + 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000, help="step runs and decisions")
    args = parser.parse_args()
    url = _database()
    os.environ["PASSFLOW_DATABASE_URL"] = url.replace("postgresql://", "postgresql+psycopg://")
    from passflow.database import upgrade

    upgrade(os.environ["PASSFLOW_DATABASE_URL"])
    started = time.monotonic()
    _seed(url, args.rows)
    print(f"seeded {args.rows} step runs and {args.rows} decisions in "
          f"{time.monotonic() - started:.0f} s (PostgreSQL)")
    from api import stats
    from models.base import utcnow

    until = utcnow()
    span = stats.stats.Span.of(until - timedelta(days=31), until)
    print("| figure (31 days) | cold ms | warm ms |\n| --- | --- | --- |")
    for name in stats.WINDOWED:
        began = time.perf_counter()
        stats.figures(name, span)
        cold = time.perf_counter() - began
        began = time.perf_counter()
        stats.figures(name, span)
        warm = time.perf_counter() - began
        print(f"| {name} | {cold * 1000:.0f} | {warm * 1000:.2f} |")


if __name__ == "__main__":
    main()
