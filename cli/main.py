"""The `passflow` command line."""

from __future__ import annotations

import argparse
import os
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


def _webhooks_refused(what: str) -> bool:
    """Webhooks carry media tokens and profile attributes: never unsigned. Says so on stderr."""
    from passflow.settings import get_settings

    settings = get_settings()
    if not settings.webhook_url:
        return False
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        print(f"passflow {what}: PASSFLOW_WEBHOOK_URL is set without PASSFLOW_WEBHOOK_SECRET: "
              "deliveries carry media tokens and profile attributes and must be signed",
              file=sys.stderr)
        return True
    if settings.webhook_url.startswith("http://"):
        print(f"passflow {what}: warning: PASSFLOW_WEBHOOK_URL is plain http; deliveries "
              "carry media tokens: use https", file=sys.stderr)
    return False


def _cannot_start(what: str, settings) -> bool:
    """Says on stderr, in one line, why this process cannot work (database, schema, broker)."""
    from cli.checks import startup_problem

    problem = startup_problem(settings)
    if problem:
        print(f"passflow {what}: {problem}", file=sys.stderr)
    return problem is not None


def _worker(args: argparse.Namespace) -> int:
    from passflow.crypto import cipher_from_settings
    from passflow.settings import get_settings
    from worker.app import celery_app
    from worker.queues import ALL_QUEUES
    from worker.tasks import register

    if _webhooks_refused("worker") or _cannot_start("worker", get_settings()):
        return 2
    if get_settings().software_statement is None:
        print("passflow worker: set PASSFLOW_SOFTWARE_STATEMENT (the software statement of your "
              "application, from Adobe's TVE Dashboard)", file=sys.stderr)
        return 2

    if args.concurrency:
        # A step may hold two connections at once (its own and the credential store's): the
        # pool must exceed the worker's threads, or they can starve each other.
        settings = get_settings()
        needed = args.concurrency + 2 - settings.db_pool_size
        if settings.db_max_overflow < needed:
            os.environ["PASSFLOW_DB_MAX_OVERFLOW"] = str(needed)
            get_settings.cache_clear()
    cipher_from_settings()  # refuse to start without PASSFLOW_SECRET_KEY
    argv = ["worker", "--loglevel", args.loglevel,
            "--queues", args.queues or ",".join(ALL_QUEUES)]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.pool:
        argv += ["--pool", args.pool]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    register(celery_app)  # the step tasks and the sweeper every worker runs
    celery_app.worker_main(argv)
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from passflow.settings import get_settings

    settings = get_settings()
    if _webhooks_refused("api") or _cannot_start("api", settings):
        return 2
    if (settings.api_token is None or not settings.api_token.get_secret_value()) and \
            not _stored_tokens():
        print("passflow api: set PASSFLOW_API_TOKEN or create one with `passflow token create` "
              "(the API refuses to start without a token)", file=sys.stderr)
        return 2
    from api.app import create_app
    from passflow import logs
    from passflow.serving import server_config

    logs.configure()
    # Whose X-Forwarded-For is believed is passflow's setting, never uvicorn's default.
    trusted = settings.trusted_proxies
    uvicorn.Server(server_config(
        create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
        log_config=None, access_log=True, proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) if trusted else None)).run()
    return 0


def _stored_tokens() -> int:
    from sqlalchemy import func, select

    from models import ApiToken
    from models.db import session_scope

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ApiToken).where(
            ApiToken.revoked_at.is_(None))) or 0


def _token(args: argparse.Namespace) -> int:
    from api.auth import create_token, revoke_token
    from models.db import session_scope

    with session_scope() as session:
        if args.action == "create":
            token = create_token(session, name=args.name, scope=args.scope)
            print(token)
            print(f"token {args.name!r} ({args.scope}) created; it is shown only now",
                  file=sys.stderr)
            return 0
        if revoke_token(session, name=args.name):
            print(f"token {args.name!r} revoked", file=sys.stderr)
            return 0
    print(f"no active token named {args.name!r}", file=sys.stderr)
    return 1


def _rotate_key(args: argparse.Namespace) -> int:
    from models.maintenance import rotate_key

    counts = rotate_key()
    print(", ".join(f"{n} {what}" for what, n in counts.items()) + " re-encrypted with the "
          "first key of PASSFLOW_SECRET_KEY")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from models.maintenance import parse_age, purge

    counts = purge(older_than=parse_age(args.older_than))
    print("deleted: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


def _forget(args: argparse.Namespace) -> int:
    from models.maintenance import forget_device

    counts = forget_device(args.device)
    print(f"device {args.device} forgotten: "
          + ", ".join(f"{n} {what}" for what, n in counts.items()))
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


def _register(args: argparse.Namespace) -> int:
    """A deliberate new DCR registration: says first what it invalidates."""
    from sqlalchemy import distinct, func, select

    from models import Profile, utcnow
    from models.db import session_scope
    from passflow.settings import get_settings
    from worker.runtime import runtime

    settings = get_settings()
    if settings.software_statement is None:
        print("passflow register: set PASSFLOW_SOFTWARE_STATEMENT", file=sys.stderr)
        return 2
    with session_scope() as session:
        devices = session.scalar(select(func.count(distinct(Profile.device_id))).where(
            Profile.not_after > utcnow())) or 0
    print(f"This registers passflow again with Adobe Pass at {settings.pass_base_url}. New "
          "client credentials invalidate every profile obtained with the current ones: "
          f"{devices} device(s) with a stored, unexpired profile will have to log in again.")
    if not args.yes:
        print("Nothing changed. Run `passflow register --yes` to register.", file=sys.stderr)
        return 1
    client = runtime().adobe.register()
    print(f"registered: client {client.client_id} (scopes: {' '.join(client.scopes)})")
    return 0


def _preflight(args: argparse.Namespace) -> int:
    from cli.preflight import main as preflight

    return preflight()


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

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

    work = commands.add_parser(
        "worker", help="a Celery worker of the app; workers take turns at the sweeper duty")
    work.add_argument("--queues", help="comma-separated queues (default: all)")
    work.add_argument("--concurrency", type=int)
    work.add_argument("--pool", choices=["prefork", "threads", "solo", "gevent"])
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

    from api.auth import SCOPES

    tok = commands.add_parser("token", help="API tokens (stored hashed, scoped)")
    tok.add_argument("action", choices=["create", "revoke"])
    tok.add_argument("--name", required=True)
    tok.add_argument("--scope", choices=SCOPES, default="read",
                     help="metrics: metrics and health; read: jobs and history without "
                          "personal data; personal: read with media tokens and profile "
                          "attributes; ingest: send events; admin: all (default: read)")
    tok.set_defaults(func=_token)

    rotate = commands.add_parser(
        "rotate-key", help="re-encrypt stored secrets with the first key of PASSFLOW_SECRET_KEY "
                           "(set it to NEW,OLD first)")
    rotate.set_defaults(func=_rotate_key)

    purge = commands.add_parser("purge", help="delete records older than an age (e.g. 90d)")
    purge.add_argument("--older-than", required=True)
    purge.set_defaults(func=_purge)

    forget = commands.add_parser("forget", help="delete a device's records everywhere")
    forget.add_argument("--device", required=True)
    forget.set_defaults(func=_forget)

    register = commands.add_parser(
        "register", help="register passflow with Adobe Pass again, on purpose (invalidates "
                         "every user's profile; passflow never does it by itself)")
    register.add_argument("--yes", action="store_true",
                          help="register (without it, only say what it would invalidate)")
    register.set_defaults(func=_register)

    pre = commands.add_parser(
        "preflight", help="check the configured Adobe environment against the REST API V2 "
                          "checklist (one line per item)")
    pre.set_defaults(func=_preflight)

    demo = commands.add_parser("demo", help="run the main job on embedded defaults")
    demo.set_defaults(func=_demo)
    return parser


def settings_problem() -> str | None:
    """The configuration's faults in one line (the setting, what is wrong), or None. A refused
    value is never echoed: it may be a secret."""
    from pydantic import ValidationError

    from passflow.settings import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        return "; ".join(
            f"PASSFLOW_{'_'.join(str(p) for p in err['loc']).upper()}: "
            f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors())
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not _simulator:  # the simulator is Adobe Pass: no passflow settings
        problem = settings_problem()
        if problem:
            print(f"passflow {args.command}: {problem}", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
