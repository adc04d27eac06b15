"""The `passflow` command line."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path


def _simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from passflow.heap import freeze_startup_heap
    from simulator import SimConfig, create_app

    app = create_app(SimConfig.load(args.config))
    freeze_startup_heap()  # as passflow's servers: Adobe Pass' stand-in pauses no more than they
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _db(args: argparse.Namespace) -> int:
    """Every fault of a `db` command in one line (a bad revision, an unreachable database, a
    schema the models disagree with), exit 2."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import DBAPIError

    try:
        return _db_action(args)
    except (CommandError, ValueError, DBAPIError) as exc:
        reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        line = (str(reason).strip().splitlines() or [type(exc).__name__])[0]
        print(f"passflow db {args.action}: {line}", file=sys.stderr)
        return 2


def _db_action(args: argparse.Namespace) -> int:
    from passflow import database

    if args.action == "upgrade":
        database.upgrade(args.url, args.revision or "head")
    elif args.action == "downgrade":
        # Down drops tables and their audit data: only to a revision named, and only --yes.
        if not args.revision or not args.yes:
            print("passflow db downgrade: name the revision to go down to and add --yes "
                  "(e.g. `passflow db downgrade 8a4d2c7e1f90 --yes`); tables dropped on the "
                  "way lose their data. Nothing changed.", file=sys.stderr)
            return 2
        losses = database.downgrade_losses(args.url, args.revision)
        said = ", ".join(f"{count} {what}" for what, count in losses)
        if losses and not args.lose_data:
            print(f"passflow db downgrade: refused: going down to {args.revision} would delete "
                  f"{said}; back the database up (docs/operations.md, Backup and restore), "
                  "then add --lose-data. Nothing changed.", file=sys.stderr)
            return 2
        database.downgrade(args.url, args.revision)
        print(f"downgraded to {args.revision}" + (f"; deleted {said}" if losses else
                                                   "; no rows lost"))
    elif args.action == "current":
        current, runs_with = database.current_revision(args.url)
        print(f"database: {current or 'no passflow schema'}")
        print(f"this passflow needs: {database.head()}")
        if runs_with:
            print(f"the schema runs with code at: {runs_with.replace(',', ', ')}")
    elif args.action == "history":
        current, _ = database.current_revision(args.url)
        for revision, _before, title in database.history():
            mark = " (current)" if revision == current else ""
            print(f"{revision}{mark}  {title}")
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

    if get_settings().software_statement is None:  # a setting: said before any connection
        print("passflow worker: set PASSFLOW_SOFTWARE_STATEMENT (the software statement of your "
              "application, from Adobe's TVE Dashboard)", file=sys.stderr)
        return 2
    if _webhooks_refused("worker") or _cannot_start("worker", get_settings()):
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
    # --quiet: no banner in plain text; its facts are the `worker_ready` log line.
    argv = ["--quiet", "worker", "--loglevel", args.log_level.upper(),
            "--queues", args.queues or ",".join(ALL_QUEUES)]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    argv += ["--pool", args.pool]  # chosen here only (Celery's own default would be prefork)
    # One identity per process, whatever the host runs: Celery's default (celery@HOST) is the
    # same for two workers on one host, which then share heartbeats, metrics and leases (a
    # killed one's play would wait out its twin's beats). A given name must be free.
    hostname = _worker_name(args.hostname)
    if hostname is None:
        return 2
    argv += ["--hostname", hostname]
    register(celery_app)  # the step tasks and the sweeper every worker runs
    import logging

    from passflow import logs

    # Before Celery starts: its first words (a warning when run as root) in the same stream.
    logs.configure(logging.getLevelNamesMapping().get(args.log_level.upper(), logging.INFO))
    celery_app.worker_main(argv)
    return 0


def _worker_name(given: str | None) -> str | None:
    """The worker's node name: the one given (refused, in one line, while a live worker beats
    under it), else `passflow-<pid>-<random>@<host>`, unique per process."""
    import secrets
    import socket

    from celery.utils.nodenames import host_format

    if not given:
        return f"passflow-{os.getpid()}-{secrets.token_hex(2)}@{socket.gethostname()}"
    name = host_format(given)
    from worker.heartbeat import PREFIX, worker_id
    from worker.runtime import runtime

    try:
        taken = runtime().redis.get(PREFIX + worker_id(name))
    except Exception:  # the broker away: Celery says so itself in a moment
        taken = None
    if taken:
        print(f"passflow worker: a live worker already runs as {name}: give each process its "
              "own --hostname, or none (each then gets a name of its own)", file=sys.stderr)
        return None
    return name


def _served_at(host: str, port: int) -> str:
    """The URL of `passflow api --host H --port P` on this machine (any address: loopback)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


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
    from passflow.heap import freeze_startup_heap
    from passflow.serving import limits_for, server_config

    logs.configure()
    served_at = _served_at(args.host, args.port)
    if not settings.public_url:
        logs.get_logger("passflow.api").info(
            "public_url_follows_listen_address", public_url=served_at,
            hint="set PASSFLOW_PUBLIC_URL to the address users' browsers open")
    # Whose X-Forwarded-For is believed is passflow's setting (api.forwarded), never uvicorn's
    # default; trusted proxies may hold more connections than one client.
    server = uvicorn.Server(server_config(
        create_app(settings, served_at=served_at), host=args.host, port=args.port,
        log_level=args.log_level, log_config=None, access_log=True, proxy_headers=False,
        limits=limits_for(settings.trusted_proxies)))
    logs.get_logger("passflow.api").info("api_starting", listen=served_at,
                                         frozen_objects=freeze_startup_heap())
    server.run()
    return 0


def _stored_tokens() -> int:
    from sqlalchemy import func, select

    from models import ApiToken
    from models.db import session_scope

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ApiToken).where(
            ApiToken.revoked_at.is_(None))) or 0


def _token_named(session, name: str) -> bool:
    from sqlalchemy import select

    from models import ApiToken

    return session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None


def _token_list() -> int:
    from sqlalchemy import select

    from models import ApiToken
    from models.db import session_scope

    with session_scope() as session:
        rows = [[t.name, t.scope, t.service_providers or "every brand",
                 f"{t.created_at:%Y-%m-%d %H:%M}",
                 f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "-"]
                for t in session.scalars(select(ApiToken).order_by(ApiToken.created_at))]
    if not rows:
        print("no stored tokens (PASSFLOW_API_TOKEN, if set, is an admin token)")
        return 0
    _table(("name", "scope", "brands", "created", "revoked"), rows)
    return 0


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _token(args: argparse.Namespace) -> int:
    from api.auth import create_token, revoke_token
    from models import audit
    from models.db import session_scope

    if args.action == "list":
        return _token_list()
    if not args.name:
        print(f"passflow token {args.action}: give --name", file=sys.stderr)
        return 2
    scopes = args.scope or ["read"]
    if len(set(scopes)) > 1:
        print(f"passflow token {args.action}: one --scope a token ({', '.join(scopes)} given): "
              "a wider scope includes the narrower (admin > personal > read > metrics)",
              file=sys.stderr)
        return 2
    scope = scopes[0]
    with session_scope() as session:
        if args.action == "create":
            if _token_named(session, args.name):
                print(f"passflow token create: a token named {args.name!r} exists already "
                      "(revoke it first, or choose another name)", file=sys.stderr)
                return 1
            try:
                token = create_token(session, name=args.name, scope=scope,
                                     service_providers=args.service_providers)
            except ValueError as exc:
                print(f"passflow token create: {exc}", file=sys.stderr)
                return 2
            audit.record(session, _actor(args), "token.create", args.name, scope=scope,
                         service_providers=args.service_providers or "every brand")
            print(token)
            limited = (f", limited to {', '.join(args.service_providers)}"
                       if args.service_providers else "")
            print(f"token {args.name!r} ({scope}{limited}) created; it is shown only now",
                  file=sys.stderr)
            return 0
        if revoke_token(session, name=args.name):
            audit.record(session, _actor(args), "token.revoke", args.name)
            print(f"token {args.name!r} revoked", file=sys.stderr)
            return 0
    print(f"no active token named {args.name!r}", file=sys.stderr)
    return 1


def _service_providers(args: argparse.Namespace) -> int:
    """The brands served: add one with its software statement (stored encrypted), list them
    with their registration, retire one (no new events; its accepted jobs still finish)."""

    from models import ServiceProvider, audit, utcnow
    from models.db import session_scope
    from passflow.crypto import cipher_from_settings
    from passflow.settings import get_settings

    settings = get_settings()
    if args.action == "list":
        return _service_provider_list(settings)
    if not args.id:
        print(f"passflow service-providers {args.action}: give the service provider's id",
              file=sys.stderr)
        return 2
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", args.id) or ".." in args.id:
        print(f"passflow service-providers {args.action}: a service provider's id is letters, "
              "digits, '.', '_' and '-' (Adobe's requestor id, e.g. REF30)", file=sys.stderr)
        return 2
    if args.id == settings.service_provider:
        print(f"passflow service-providers {args.action}: {args.id} is PASSFLOW_SERVICE_PROVIDER "
              "(configured, always served; its statement is PASSFLOW_SOFTWARE_STATEMENT)",
              file=sys.stderr)
        return 2
    with session_scope() as session:
        row = session.get(ServiceProvider, args.id)
        if args.action == "retire":
            if row is None or row.status != "active":
                print(f"passflow service-providers retire: {args.id} is not served",
                      file=sys.stderr)
                return 1
            row.status, row.retired_at = "retired", utcnow()
            # A retired brand serves nothing: a problem of its registration (a statement Adobe
            # refused) no longer fails /healthz. Found again at its first job if re-added.
            from sqlalchemy import update

            from models import Registration
            from worker.adobe_pass import registration_key

            key = registration_key(settings.pass_base_url,
                                   cipher_from_settings().decrypt(row.software_statement_enc))
            session.execute(update(Registration).where(Registration.key == key)
                            .values(problem=None, problem_at=None))
            audit.record(session, _actor(args), "service_provider.retire", args.id)
            print(f"{args.id} retired: its events are refused from now on (422); jobs "
                  "already accepted finish")
            return 0
        statement = _statement_file(args.software_statement_file)
        if statement is None:
            return 2
        sealed = cipher_from_settings().encrypt(statement)
        if row is None:
            session.add(ServiceProvider(id=args.id, software_statement_enc=sealed,
                                        status="active", added_by=_actor(args)))
        else:
            row.software_statement_enc, row.status, row.retired_at = sealed, "active", None
            row.added_by = _actor(args)
        audit.record(session, _actor(args), "service_provider.add", args.id)
    print(f"{args.id} served: running workers register it with Adobe Pass at its first job "
          "(no restart)")
    return 0


def _statement_file(path: str | None) -> str | None:
    """A software statement from its file, or None after saying why in one line."""
    if not path:
        print("passflow service-providers add: give --software-statement-file PATH (the "
              "statement from Adobe's TVE Dashboard)", file=sys.stderr)
        return None
    try:
        statement = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"passflow service-providers add: cannot read {path}: {type(exc).__name__}",
              file=sys.stderr)
        return None
    if statement.count(".") != 2 or any(ch.isspace() for ch in statement):
        print(f"passflow service-providers add: {path} does not hold a software statement "
              "(a JWT: three dot-separated parts)", file=sys.stderr)
        return None
    return statement


def _actor(args: argparse.Namespace) -> str:
    """Who runs this command, for the audit log: the OS account, and the person --as names."""
    from models.audit import cli_actor

    return cli_actor(getattr(args, "as_name", None))


def _workers(args: argparse.Namespace) -> int:
    """The live workers and the queues: who holds a job (its lease owner starts with the
    worker's id), and a queue with work and no consumer."""
    import json
    import time

    import redis

    from passflow.settings import get_settings
    from worker.heartbeat import live_workers, queues_state, unconsumed
    from worker.queues import ALL_QUEUES

    client = redis.Redis.from_url(get_settings().broker_url, socket_timeout=3,
                                  socket_connect_timeout=3)
    try:
        workers, queues = live_workers(client), queues_state(client, ALL_QUEUES)
    except redis.RedisError as exc:
        print(f"passflow workers: cannot reach the broker: {type(exc).__name__}",
              file=sys.stderr)
        return 2
    finally:
        client.close()
    if args.json:
        print(json.dumps({"workers": workers, "queues": queues}, indent=1))
        return 0
    now = time.time()
    if workers:
        _table(("id", "name", "host", "pid", "pool", "queues", "up", "last beat"),
               [[w["id"], w["name"], w["host"], str(w["pid"]), str(w["pool"]),
                 ",".join(w["queues"]), f"{(now - w['started_at']) / 60:.0f} min",
                 f"{w['beat_age_s']} s ago"] for w in workers])
    else:
        print("no live worker")
    print()
    _table(("queue", "waiting", "consumers", "oldest"),
           [[q, str(s["depth"]), str(s["consumers"]),
             "-" if s["oldest_age_s"] is None else f"{s['oldest_age_s']} s"]
            for q, s in queues.items()])
    idle = unconsumed(queues)
    if idle:
        print(f"\nwork waiting with no worker consuming: {', '.join(idle)}", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    import json

    from models.audit import entries
    from models.db import session_scope

    with session_scope() as session:
        found = entries(session, target=args.target, limit=args.limit)
    if args.json:
        print(json.dumps({"entries": found}, indent=1))
        return 0
    if not found:
        print("no audit entries" + (f" for {args.target}" if args.target else ""))
        return 0
    _table(("at", "actor", "action", "target", "detail"),
           [[e["at"], e["actor"], e["action"], e["target"], json.dumps(e["detail"])]
            for e in found])
    return 0


def _service_provider_list(settings) -> int:
    from sqlalchemy import select

    from models import Registration, ServiceProvider
    from models.db import session_scope
    from passflow.crypto import cipher_from_settings
    from worker.adobe_pass import registration_key

    cipher = cipher_from_settings()

    def registration(session, statement: str | None) -> str:
        if statement is None:
            return "no statement"
        key = registration_key(settings.pass_base_url, statement)
        row = session.scalar(select(Registration).where(Registration.key == key))
        if row is not None and row.problem:  # a statement refused before any registration too
            return f"problem: {row.problem}"
        if row is None or not row.client_id:
            return "not yet registered"
        return f"registered {row.client_id}"

    with session_scope() as session:
        configured = settings.software_statement.get_secret_value() \
            if settings.software_statement else None
        rows = [[settings.service_provider, "configured", "-",
                 registration(session, configured)]]
        for sp in session.scalars(select(ServiceProvider).order_by(ServiceProvider.id)):
            rows.append([sp.id, sp.status, f"{sp.added_at:%Y-%m-%d %H:%M}",
                         registration(session, cipher.decrypt(sp.software_statement_enc))])
    _table(("service provider", "status", "added", "registration"), rows)
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    from models.maintenance import rotate_key

    counts = rotate_key()
    _audit_act(args, "secret_key.rotate", "PASSFLOW_SECRET_KEY", **counts)
    print(", ".join(f"{n} {what}" for what, n in counts.items()) + " re-encrypted with the "
          "first key of PASSFLOW_SECRET_KEY")
    return 0


def _audit_act(args: argparse.Namespace, action: str, target: str, **detail: object) -> None:
    """An audit row of its own, for an act that ran in transactions of its own."""
    from models import audit
    from models.db import session_scope

    with session_scope() as session:
        audit.record(session, _actor(args), action, target, **detail)


def _purge(args: argparse.Namespace) -> int:
    from models.maintenance import parse_age, purge, purge_plan

    age = parse_age(args.older_than)
    plan = purge_plan(older_than=age)  # ValueError (one line, exit 2) under the minimum age
    newest = f", the newest from {plan.newest:%Y-%m-%d %H:%M} UTC" if plan.newest else ""
    print(f"{'would delete' if args.dry_run else 'deleting'}: {plan.jobs} finished job(s) "
          f"created before {plan.cutoff:%Y-%m-%d %H:%M} UTC{newest}, with their events, "
          "sessions, profiles, decisions, logouts and webhook deliveries, and devices left "
          "with nothing, idle since then")
    if args.dry_run:
        return 0
    counts = purge(older_than=age)
    _audit_act(args, "records.purge", f"older than {args.older_than}", **counts)
    print("deleted: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


def _forget(args: argparse.Namespace) -> int:
    """Deletes at once only with --yes; otherwise says first what would go."""
    from models.maintenance import forget_device

    def said(counts: dict[str, int]) -> str:
        return ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing"

    if not args.yes:
        plan = forget_device(args.device, dry_run=True)
        print(f"device {args.device}: would delete {said(plan)}")
        if args.dry_run:
            return 0
        print("Nothing changed. Run `passflow forget --device ID --yes` to delete.",
              file=sys.stderr)
        return 1
    counts = forget_device(args.device, actor=_actor(args))
    print(f"device {args.device} forgotten: deleted {said(counts)}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from models.db import session_scope
    from models.history import HistoryQuery, history
    from passflow.crypto import cipher_from_settings

    query = HistoryQuery(device_id=args.device, mvpd=args.mvpd, resource=args.resource,
                         job_id=args.job, outcome=args.outcome, since=args.since,
                         until=args.until, limit=args.limit, cursor=args.cursor,
                         service_provider=args.service_provider)
    with session_scope() as session:  # the operator holds the key: codes shown
        entries, next_cursor = history(session, query, cipher_from_settings())
    columns = ("at", "kind", "mvpd", "resource", "outcome", "reason", "job_id")
    whose = f"device {args.device}" if args.device else "any device"
    return _page(args, "entries", entries, next_cursor,
                 columns if args.device else ("at", "device_id", *columns[1:]),
                 empty=f"no history for {whose} with these filters")


def _page(args: argparse.Namespace, name: str, items: list[dict], next_cursor: str | None,
          columns: tuple[str, ...], *, empty: str) -> int:
    """One page of `items`: JSON with --json, else a table (a `reason` column says why), and
    how to ask for the next."""
    import json

    if args.json:
        print(json.dumps({name: items, "next_cursor": next_cursor}, indent=2))
        return 0
    if not items:
        print(empty if args.cursor is None else "no more")
        return 0
    _table(columns, [[_reason(item) if c == "reason" else str(item.get(c) or "")
                      for c in columns] for item in items])
    if next_cursor:
        print(f"more: --cursor {next_cursor}")
    return 0


def _reason(entry: dict) -> str:
    """Why, in one cell: the error code and action, and the message cut short."""
    parts = [p for p in (entry.get("error_code"), entry.get("error_action") and
                         f"action {entry['error_action']}") if p]
    if entry.get("reason"):
        parts.append(str(entry["reason"])[:60])
    return "; ".join(parts)


def _jobs(args: argparse.Namespace) -> int:
    import json

    from models import Job
    from models.db import session_scope
    from models.history import JobQuery, jobs_page
    from worker import dispatch, jobs
    from worker.views import job_view

    filters = {"type": args.type, "device_id": args.device, "mvpd": args.mvpd,
               "service_provider": args.service_provider, "error_code": args.error_code,
               "step": args.step, "since": args.since, "until": args.until}
    if args.action == "list":
        query = JobQuery(**filters, status=args.status, event_id=args.event,
                         limit=args.limit or 50, cursor=args.cursor)
        with session_scope() as session:
            found, next_cursor = jobs_page(session, query)
        return _page(args, "jobs", found, next_cursor, ("created_at", "job_id", "type",
                     "status", "device_id", "mvpd", "reason"), empty="no jobs with these filters")
    if args.action == "retry" and not args.job_id:
        return _retry_many(args, JobQuery(**filters))
    if not args.job_id:
        print(f"passflow jobs {args.action}: give the job id", file=sys.stderr)
        return 2
    with session_scope() as session:  # the 8 characters `passflow demo` prints will do
        found = _job_ids(session, args.job_id)
    if len(found) > 1:
        print(f"passflow jobs {args.action}: {len(found)} jobs start with {args.job_id}: give "
              "more of the id", file=sys.stderr)
        return 2
    if found:
        args.job_id = found[0]
    if args.action == "retry":
        try:
            new_id = dispatch.retry(args.job_id, requested_by=_actor(args))
        except LookupError:
            print(f"passflow jobs retry: no job {args.job_id}", file=sys.stderr)
            return 1
        except jobs.NotRetryable as exc:
            print(f"passflow jobs retry: {exc}", file=sys.stderr)
            return 1
        print(f"job {new_id} retries {args.job_id} (queued)")
        return 0
    with session_scope() as session:
        job = session.get(Job, args.job_id)
        if job is None:
            print(f"passflow jobs show: no job {args.job_id}", file=sys.stderr)
            return 1
        print(json.dumps(job_view(session, job, None), indent=2))
    return 0


def _retry_many(args: argparse.Namespace, query) -> int:
    """`jobs retry --status failed` with filters: every failed job they match that no job
    retries yet (worker.dispatch.retry_many, as the API and the console do)."""
    import json

    from worker import dispatch

    if args.status != "failed" or args.event or args.cursor:
        print("passflow jobs retry: give a job id, or --status failed with filters (--since, "
              "--error-code, --mvpd, --type, ...): only failed jobs are retried",
              file=sys.stderr)
        return 2
    report = dispatch.retry_many(query, requested_by=_actor(args), dry_run=args.dry_run,
                                 limit=args.limit or dispatch.RETRY_MANY_LIMIT)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    codes = ", ".join(f"{code or 'no code'}: {n}" for code, n in report["by_error_code"].items())
    print(f"{report['matched']} failed job(s) match, not retried yet" + (f" ({codes})"
                                                                       if codes else ""))
    if args.dry_run:
        print(f"would retry {report['would_retry']} (dry run: nothing changed)")
        return 0
    for done in report["retried"]:
        print(f"job {done['new_job_id']} retries {done['job_id']} (queued)")
    for refused in report["refused"]:
        print(f"job {refused['job_id']} not retried: {refused['reason']}")
    print(f"retried {len(report['retried'])}, not retried {len(report['refused'])}, "
          f"{report['left']} left" + (" (run it again for the rest)" if report["left"] else ""))
    return 0


def _job_ids(session, given: str) -> list[str]:
    """The job `given` names: its whole id, or a start of 6 characters or more of one."""
    from sqlalchemy import select

    from models import Job

    if session.get(Job, given) is not None or len(given) < 6 \
            or not all(c in "0123456789abcdef-" for c in given.lower()):
        return [given]
    return list(session.scalars(select(Job.id).where(Job.id.startswith(given.lower()))
                                .order_by(Job.id).limit(2)))


def _register(args: argparse.Namespace) -> int:
    """A deliberate new DCR registration: says first what it invalidates."""
    from sqlalchemy import distinct, func, select

    from models import Profile, utcnow
    from models.db import session_scope
    from passflow.settings import get_settings
    from worker.runtime import runtime

    settings = get_settings()
    sp = args.service_provider or settings.service_provider
    if sp == settings.service_provider and settings.software_statement is None:
        print("passflow register: set PASSFLOW_SOFTWARE_STATEMENT", file=sys.stderr)
        return 2
    try:
        adobe = runtime().adobe_for(sp)
    except LookupError as exc:
        print(f"passflow register: {exc}", file=sys.stderr)
        return 2
    with session_scope() as session:
        devices = session.scalar(select(func.count(distinct(Profile.device_id))).where(
            Profile.not_after > utcnow(), Profile.service_provider == sp,
            Profile.logged_out_at.is_(None))) or 0
    print(f"This registers {sp} again with Adobe Pass at {settings.pass_base_url}. New "
          "client credentials invalidate every profile obtained with the current ones: "
          f"{devices} device(s) with a stored, unexpired profile will have to log in again.")
    if not args.yes:
        print("Nothing changed. Run `passflow register --yes` to register.", file=sys.stderr)
        return 1
    client = adobe.register()
    from models import audit

    with session_scope() as session:
        audit.record(session, _actor(args), "registration.register", sp,
                     client_id=client.client_id, base_url=settings.pass_base_url)
    print(f"registered: client {client.client_id} (scopes: {' '.join(client.scopes)}); stored "
          "profiles and the Permits under them are no longer reused")
    return 0


def _preflight(args: argparse.Namespace) -> int:
    from cli.preflight import main as preflight

    return preflight(with_session=args.with_session)


def _demo(args: argparse.Namespace) -> int:
    import threading

    from cli.demo import run_demo

    code = run_demo(keep=args.keep)
    # Everything it started is stopped; a thread of a library still waiting on something must
    # not keep the command from returning. Named, so it can be found and fixed.
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if lingering:
        print(f"passflow demo: threads still running at exit: {', '.join(lingering)}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)
    return code


LOG_LEVEL_HELP = "debug, info, warning or error (default: %(default)s)"


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError("give 1 to 500")
    return value


def _instant(text: str):
    from datetime import datetime

    from models.base import in_utc

    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("give an ISO time, e.g. 2026-12-01T21:00Z") from exc
    try:
        return in_utc(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_paging(parser: argparse.ArgumentParser, *, default_limit: int | None,
                default_text: str = "%(default)s") -> None:
    parser.add_argument("--since", type=_instant, help="from this time on (ISO, with a zone)")
    parser.add_argument("--until", type=_instant, help="before this time (ISO, with a zone)")
    parser.add_argument("--limit", type=_positive, default=default_limit,
                        help=f"at most this many, 1-500 (default: {default_text})")
    parser.add_argument("--cursor", help="the next page, as the previous one printed it")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _as_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="as_name", metavar="NAME",
                        help="the person acting, recorded in the audit log beside the OS "
                             "account (for a shared account)")


def build_parser() -> argparse.ArgumentParser:
    from models import JobStatus
    from models.history import OUTCOME_KINDS
    from passflow.events import EventType

    parser = argparse.ArgumentParser(prog="passflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulator", help="serve the bundled Adobe Pass simulator")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    sim.add_argument("--port", type=int, default=8090, help="port (default: %(default)s)")
    sim.add_argument("--config", help="fixtures TOML file (default: the bundled fixtures)")
    sim.add_argument("--log-level", default="info", type=str.lower, help=LOG_LEVEL_HELP)
    sim.set_defaults(func=_simulator)

    db = commands.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade", "check", "current", "history"],
                    help="upgrade: to the newest schema; downgrade: to REVISION (needs --yes, "
                         "and --lose-data when rows would go); check: models and migrations "
                         "agree; current: the database's revision; history: every revision")
    db.add_argument("revision", nargs="?",
                    help="target revision (upgrade: default head; downgrade: required)")
    db.add_argument("--yes", action="store_true", help="really downgrade (drops data)")
    db.add_argument("--lose-data", action="store_true",
                    help="downgrade even though rows would be deleted (the refusal counts "
                         "them: back up first)")
    db.add_argument("--url", help="database URL (default: PASSFLOW_DATABASE_URL)")
    db.set_defaults(func=_db)

    work = commands.add_parser(
        "worker", help="a Celery worker of the app; workers take turns at the sweeper duty")
    work.add_argument("--queues", help="comma-separated queues (default: all)")
    work.add_argument("--concurrency", type=int, help="threads or processes of this worker "
                                                      "(default: Celery's, the CPU count)")
    work.add_argument("--pool", choices=["prefork", "threads", "solo", "gevent"],
                      default="threads",
                      help="Celery pool (default: threads; the worker's first log line, "
                           "worker_ready, says which runs)")
    work.add_argument("--hostname", help="worker node name, unique (default: passflow-PID-"
                                         "RANDOM@HOST, one of its own per process)")
    work.add_argument("--log-level", default="info", type=str.lower, help=LOG_LEVEL_HELP)
    work.set_defaults(func=_worker)

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    api.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    api.add_argument("--log-level", default="info", type=str.lower, help=LOG_LEVEL_HELP)
    api.set_defaults(func=_api)

    hist = commands.add_parser(
        "history", help="entitlement history: sessions, profiles, decisions, logouts, and "
                        "failed or cancelled attempts with their reason, newest first")
    hist.add_argument("--device", help="only this device (without it: every device, with its "
                                       "id shown)")
    hist.add_argument("--mvpd", help="only this MVPD")
    hist.add_argument("--service-provider", metavar="ID", help="only this brand")
    hist.add_argument("--resource", help="only decisions about this resource")
    hist.add_argument("--job", help="only this job's entries")
    hist.add_argument("--outcome", choices=sorted(OUTCOME_KINDS),
                      help="only entries with this outcome")
    _add_paging(hist, default_limit=100)
    hist.set_defaults(func=_history)

    job = commands.add_parser("jobs", help="jobs as operations need them: list, show, retry")
    job.add_argument("action", choices=["list", "show", "retry"],
                     help="list (filters below), show JOB_ID, retry JOB_ID (a failed job), "
                          "or retry --status failed with filters (every failed job they "
                          "match that is not retried yet; --dry-run counts them first)")
    job.add_argument("job_id", nargs="?", help="the job (show, retry)")
    job.add_argument("--error-code", metavar="CODE", help="only failed jobs with this error code")
    job.add_argument("--mvpd", help="only this MVPD's jobs")
    job.add_argument("--step", help="only jobs that ran this step (a failed job: where it failed)")
    job.add_argument("--dry-run", action="store_true",
                     help="retry by filter: count what would be retried, change nothing")
    job.add_argument("--status", choices=[s.value for s in JobStatus], help="only this status")
    job.add_argument("--type", choices=[t.value for t in EventType], help="only this type")
    job.add_argument("--device", help="only this device's jobs")
    job.add_argument("--service-provider", metavar="ID", help="only this brand's jobs")
    job.add_argument("--event", help="only this event id's jobs (its first and retries)")
    _add_paging(job, default_limit=None, default_text="50 listed, 500 retried")
    _as_option(job)
    job.set_defaults(func=_jobs)

    from api.auth import SCOPES

    tok = commands.add_parser("token", help="API tokens (stored hashed, scoped)")
    tok.add_argument("action", choices=["create", "revoke", "list"],
                     help="create (printed once), revoke, or list the stored tokens")
    tok.add_argument("--name", help="the token's name (create, revoke)")
    tok.add_argument("--scope", choices=SCOPES, action="append",
                     help="metrics: metrics and health; read: jobs and history without "
                          "personal data; personal: read with media tokens and profile "
                          "attributes; ingest: send events; admin: all (default: read; "
                          "one scope a token: a wider one includes the narrower)")
    tok.add_argument("--service-provider", action="append", dest="service_providers",
                     metavar="ID", help="limit the token to this brand (repeat for more): "
                                        "events, jobs and history of those only, no "
                                        "pool-wide figures, no console (default: every brand)")
    _as_option(tok)
    tok.set_defaults(func=_token)

    brands = commands.add_parser(
        "service-providers", help="the brands (Adobe service providers) this deployment "
                                  "serves, each with its own software statement")
    brands.add_argument("action", choices=["add", "list", "retire"],
                        help="add one (with its statement), list them with their "
                             "registration, or retire one (its events refused, its jobs finish)")
    brands.add_argument("id", nargs="?", help="the service provider's id (add, retire)")
    brands.add_argument("--software-statement-file", metavar="PATH",
                        help="the statement from Adobe's TVE Dashboard (add)")
    _as_option(brands)
    brands.set_defaults(func=_service_providers)

    rotate = commands.add_parser(
        "rotate-key", help="re-encrypt stored secrets with the first key of PASSFLOW_SECRET_KEY "
                           "(set it to NEW,OLD first)")
    _as_option(rotate)
    rotate.set_defaults(func=_rotate_key)

    purge = commands.add_parser("purge", help="delete records older than an age (e.g. 90d)")
    purge.add_argument("--older-than", required=True,
                       help="age of the finished jobs to delete, e.g. 90d (at least 1d)")
    purge.add_argument("--dry-run", action="store_true",
                       help="only say what would be deleted")
    _as_option(purge)
    purge.set_defaults(func=_purge)

    forget = commands.add_parser("forget", help="delete a device's records everywhere")
    forget.add_argument("--device", required=True, help="the device's id")
    forget.add_argument("--yes", action="store_true",
                        help="delete (without it, only say what would be deleted)")
    forget.add_argument("--dry-run", action="store_true",
                        help="say what would be deleted, change nothing, exit 0")
    _as_option(forget)
    forget.set_defaults(func=_forget)

    register = commands.add_parser(
        "register", help="register passflow with Adobe Pass again, on purpose (invalidates "
                         "every user's profile; passflow never does it by itself)")
    register.add_argument("--yes", action="store_true",
                          help="register (without it, only say what it would invalidate)")
    register.add_argument("--service-provider", metavar="ID",
                          help="the brand to register (default: PASSFLOW_SERVICE_PROVIDER)")
    _as_option(register)
    register.set_defaults(func=_register)

    live = commands.add_parser("workers", help="the live workers (who holds a job: its lease "
                                               "owner starts with the worker's id) and queues")
    live.add_argument("--json", action="store_true", help="JSON instead of tables")
    live.set_defaults(func=_workers)

    aud = commands.add_parser("audit", help="who did what, when: retries, cancels, forgets, "
                                             "registrations, tokens, brands")
    aud.add_argument("--target", help="only what acted on this (a job id, a device id, ...)")
    aud.add_argument("--limit", type=int, default=50, help="at most this many (newest first)")
    aud.add_argument("--json", action="store_true", help="JSON instead of a table")
    aud.set_defaults(func=_audit)

    pre = commands.add_parser(
        "preflight", help="check the configured Adobe environment against the REST API V2 "
                          "checklist (one line per item); makes no session at Adobe Pass "
                          "unless told")
    pre.add_argument("--with-session", action="store_true",
                     help="also create an authentication session at Adobe Pass and poll it "
                          "once (a real session: not against production unless you mean it)")
    pre.set_defaults(func=_preflight)

    demo = commands.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--keep", action="store_true",
                      help="keep the API, a worker and the simulator running afterwards, to "
                           "look around (the activation page, history, jobs); Ctrl-C stops them")
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


def _version() -> str:
    from passflow.database import build_info

    build = build_info()
    return f"{build['version']} (schema revision {build['schema']})"


def main(argv: list[str] | None = None) -> int:
    import logging

    from passflow import logs

    args = build_parser().parse_args(argv)
    if args.func is not _simulator:  # the simulator is Adobe Pass: no passflow settings
        problem = settings_problem()
        if problem:
            print(f"passflow {args.command}: {problem}", file=sys.stderr)
            return 2
        # A command's own answer is its standard output (JSON with --json); what passflow
        # logs on the way (a retry's warning line) goes to standard error. `api` and `worker`
        # set their own level.
        logs.configure(logging.WARNING)
    try:
        return args.func(args)
    except Exception as exc:
        problem = _said(exc)
        if problem is None:
            raise  # a fault of passflow's: the traceback is the report
        print(f"passflow {args.command}: {problem}", file=sys.stderr)
        return 2


def _said(exc: Exception) -> str | None:
    """A fault of the input or the environment, in one line with its fix; None for a bug."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from passflow.crypto import SecretKeyMissing
    from passflow.database import schema_problem
    from passflow.settings import get_settings

    if isinstance(exc, SecretKeyMissing):
        return f"{exc}"
    if isinstance(exc, DBAPIError | ArgumentError | NoSuchModuleError):
        return schema_problem(get_settings().database_url) or (
            f"the database refused: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}")
    if isinstance(exc, ValueError):  # a value given on the command line, refused
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
