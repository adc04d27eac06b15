"""The `passflow` command line."""

from __future__ import annotations

import argparse
import sys


def _simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from simulator import SimConfig, create_app

    app = create_app(SimConfig.load(args.config))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _db(args: argparse.Namespace) -> int:
    from passflow import database

    if args.action == "upgrade":
        database.upgrade(args.url, args.revision or "head")
    elif args.action == "downgrade":
        database.downgrade(args.url, args.revision or "base")
    else:
        database.check(args.url)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from passflow.crypto import cipher_from_settings
    from worker.app import celery_app
    from worker.queues import ALL_QUEUES

    cipher_from_settings()  # refuse to start without PASSFLOW_SECRET_KEY
    argv = ["worker", "--loglevel", args.loglevel,
            "--queues", args.queues or ",".join(ALL_QUEUES)]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.pool:
        argv += ["--pool", args.pool]
    if args.beat:
        argv.append("--beat")
    if args.hostname:
        argv += ["--hostname", args.hostname]
    celery_app.worker_main(argv)
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from passflow.settings import get_settings

    settings = get_settings()
    if settings.api_token is None or not settings.api_token.get_secret_value():
        print("passflow api: set PASSFLOW_API_TOKEN (the API refuses to start without one)",
              file=sys.stderr)
        return 2
    from api.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _history(args: argparse.Namespace) -> int:
    import json

    from models.db import session_scope
    from models.history import HistoryQuery, history

    with session_scope() as session:
        entries, _ = history(session, HistoryQuery(device_id=args.device, mvpd=args.mvpd,
                                                   resource=args.resource, limit=args.limit))
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print(f"no history for device {args.device}")
        return 0
    columns = ("at", "kind", "mvpd", "resource", "outcome", "job_id")
    rows = [[str(e.get(c) or "") for c in columns] for e in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from passflow.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulator", help="serve the bundled Adobe Pass simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--config", help="fixtures TOML file (default: the bundled fixtures)")
    sim.add_argument("--log-level", default="info")
    sim.set_defaults(func=_simulator)

    db = commands.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade", "check"])
    db.add_argument("--revision", help="target revision (default: head / base)")
    db.add_argument("--url", help="database URL (default: PASSFLOW_DATABASE_URL)")
    db.set_defaults(func=_db)

    work = commands.add_parser("worker", help="a Celery worker of the app")
    work.add_argument("--queues", help="comma-separated queues (default: all)")
    work.add_argument("--concurrency", type=int)
    work.add_argument("--pool", choices=["prefork", "threads", "solo", "gevent"])
    work.add_argument("--beat", action="store_true", help="also run the periodic sweeper")
    work.add_argument("--hostname", help="worker node name (default: celery@HOST)")
    work.add_argument("--loglevel", default="INFO")
    work.set_defaults(func=_worker)

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--log-level", default="info")
    api.set_defaults(func=_api)

    hist = commands.add_parser("history", help="entitlement history of a device")
    hist.add_argument("--device", required=True)
    hist.add_argument("--mvpd")
    hist.add_argument("--resource")
    hist.add_argument("--limit", type=int, default=100)
    hist.add_argument("--json", action="store_true", help="print the raw entries")
    hist.set_defaults(func=_history)

    demo = commands.add_parser("demo", help="run the main job on embedded defaults")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
