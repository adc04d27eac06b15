"""Figures over a time window, from the stored records: what the operations console charts and
`GET /v1/stats/...` answer (docs/api.md). Counted in SQL (GROUP BY over indexed times); the
percentiles in SQL on PostgreSQL and over the window's values on SQLite (an embedded
deployment's volumes)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from models.base import utc_text, utcnow
from models.db import on_postgresql
from models.entitlements import AuthSession, Decision, Profile, SessionStatus
from models.jobs import FINAL_STATUSES, Job, JobStatus, JobStep, WebhookDelivery

# The windows the console offers, and the width of a chart's bar in each.
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "hour": (timedelta(hours=1), 60),
    "day": (timedelta(days=1), 15 * 60),
    "week": (timedelta(days=7), 3600),
}
MAX_WINDOW = timedelta(days=31)
MAX_BUCKETS = 2000  # the most bars one series answers (a wide window gets wider bars)


@dataclass(frozen=True)
class Span:
    """A window [since, until) and the width of its bars in seconds."""

    since: datetime
    until: datetime
    bucket_s: int

    @classmethod
    def of(cls, since: datetime | None, until: datetime | None, *,
           default: str = "hour") -> Span:
        """The window asked for: both ends, one end and the default's length, or the default
        window ending now. ValueError when it is empty or longer than MAX_WINDOW."""
        length, _ = WINDOWS[default]
        until = until or ((since + length) if since else utcnow())
        since = since or (until - length)
        if since >= until:
            raise ValueError("since must be before until")
        if until - since > MAX_WINDOW:
            raise ValueError(f"a window is at most {MAX_WINDOW.days} days")
        # The bars of the shortest named window that holds it: a minute for an hour or less.
        seconds = (until - since).total_seconds()
        bucket = next((b for window, b in WINDOWS.values()
                       if seconds <= window.total_seconds()), WINDOWS["week"][1])
        while seconds / bucket > MAX_BUCKETS:
            bucket *= 2
        return cls(since, until, bucket)

    @classmethod
    def named(cls, window: str) -> Span:
        return cls.of(None, None, default=window)

    def where(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.since, column < self.until)

    def describe(self) -> dict[str, Any]:
        return {"since": utc_text(self.since), "until": utc_text(self.until),
                "bucket_s": self.bucket_s}


# SQLite computes percentiles in Python, over at most this many of the window's values (an
# embedded deployment's volumes; the answer says when it sampled).
ROW_CAP = 50_000


def _epoch(session: Session, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a stored time, on either dialect, to the millisecond (strftime's
    %s would round every step's latency to whole seconds)."""
    if on_postgresql(session):
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _bucket(session: Session, column: Any, span: Span) -> ColumnElement[int]:
    epoch = _epoch(session, column)
    start = span.since.timestamp()
    return cast(func.floor((epoch - start) / span.bucket_s), Float)


def _percentiles(session: Session, stmt: Any, qs: tuple[float, ...]) -> list[float | None]:
    """Percentiles of the single column `stmt` selects."""
    if on_postgresql(session):
        sub = stmt.subquery()
        value = list(sub.c)[0]
        row = session.execute(select(*(
            func.percentile_cont(q).within_group(value) for q in qs))).one()
        return [None if v is None else float(v) for v in row]
    values = sorted(float(v) for v in session.scalars(stmt.limit(ROW_CAP)) if v is not None)
    if not values:
        return [None for _ in qs]
    if len(values) == 1:
        return [values[0] for _ in qs]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [cuts[int(q * 100) - 1] if 0 < q < 1 else (values[0] if q == 0 else values[-1])
            for q in qs]


def decisions(session: Session, span: Span) -> dict[str, Any]:
    """Permits and Denies in the window, in all and per bar."""
    bucket = _bucket(session, Decision.created_at, span).label("bucket")
    rows = session.execute(
        select(bucket, Decision.decision, func.count())
        .where(span.where(Decision.created_at)).group_by(bucket, Decision.decision)).all()
    totals = {"Permit": 0, "Deny": 0}
    bars: dict[int, dict[str, int]] = {}
    for index, outcome, count in rows:
        totals[outcome] = totals.get(outcome, 0) + count
        bars.setdefault(int(index), {"Permit": 0, "Deny": 0})[outcome] = count
    series = []
    count = int((span.until - span.since).total_seconds() // span.bucket_s) + 1
    for index in range(count):
        at = span.since + timedelta(seconds=index * span.bucket_s)
        if at >= span.until:
            break
        series.append({"at": utc_text(at), **bars.get(index, {"Permit": 0, "Deny": 0})})
    return {**span.describe(), "totals": totals, "series": series}


def denies(session: Session, span: Span) -> dict[str, Any]:
    """Denies in the window by provider and enhanced error code, most first."""
    rows = session.execute(
        select(Decision.mvpd, Decision.error_code, Decision.error_action, func.count())
        .where(span.where(Decision.created_at), Decision.decision == "Deny")
        .group_by(Decision.mvpd, Decision.error_code, Decision.error_action)
        .order_by(func.count().desc(), Decision.mvpd)).all()
    return {**span.describe(), "total": sum(r[3] for r in rows),
            "by_provider": [{"mvpd": mvpd, "error_code": code, "error_action": action,
                             "count": count} for mvpd, code, action, count in rows]}


def authentication(session: Session, span: Span) -> dict[str, Any]:
    """The funnel of the sessions created in the window: created, logged in (a profile came
    back), expired; and the time from a session's creation to its profile."""
    statuses = dict(session.execute(
        select(AuthSession.status, func.count()).where(span.where(AuthSession.created_at))
        .group_by(AuthSession.status)).all())
    login = (select(_epoch(session, Profile.created_at)
                    - _epoch(session, AuthSession.created_at))
             .select_from(AuthSession).join(Profile, Profile.job_id == AuthSession.job_id)
             .where(span.where(AuthSession.created_at)))
    logged_in = session.scalar(select(func.count()).select_from(login.subquery())) or 0
    profiles = session.scalar(select(func.count()).where(span.where(Profile.created_at))) or 0
    median, p90 = _percentiles(session, login, (0.5, 0.9))
    return {**span.describe(),
            "sessions_created": sum(statuses.values()),
            "logged_in": logged_in,
            "profiles_received": profiles,
            "expired": statuses.get(SessionStatus.EXPIRED.value, 0),
            "pending": statuses.get(SessionStatus.PENDING.value, 0),
            "by_status": statuses,
            "time_to_log_in_s": {"median": _round(median), "p90": _round(p90)}}


def throttling(session: Session, span: Span) -> dict[str, Any]:
    """Adobe Pass's 429s counted on the steps that ran in the window, and the jobs that ended
    on them (`rate_limited`). The device budget's own waits are the metric
    passflow_throttled_total."""
    answered_429 = session.scalar(select(func.coalesce(func.sum(JobStep.rate_limited), 0))
                                  .where(span.where(JobStep.started_at))) or 0
    # A job that ended `rate_limited` did so on Adobe's 429s (the error's status) or on
    # passflow's own per-device budget (no request sent: no status): two different stories.
    adobe = case((Job.error["status"].as_integer() == 429, 1), else_=0)
    ended, on_adobe = session.execute(select(func.count(), func.coalesce(func.sum(adobe), 0))
                                      .where(span.where(Job.finished_at),
                                             Job.status == JobStatus.FAILED.value,
                                             Job.error["code"].as_string() == "rate_limited")
                                      ).one()
    by_step = session.execute(
        select(JobStep.step, func.sum(JobStep.rate_limited))
        .where(span.where(JobStep.started_at), JobStep.rate_limited > 0)
        .group_by(JobStep.step).order_by(JobStep.step)).all()
    return {**span.describe(), "answered_429": int(answered_429),
            "jobs_failed_rate_limited": int(ended),
            "jobs_failed_adobe_429": int(on_adobe),
            "jobs_failed_device_budget": int(ended) - int(on_adobe),
            "by_step": [{"step": step, "answered_429": int(n)} for step, n in by_step]}


def backlog(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Now, per step: jobs due and not held by a worker, the oldest due one's wait, and the
    jobs a worker holds."""
    now = now or utcnow()
    live = and_(Job.status.not_in([s.value for s in FINAL_STATUSES]),
                Job.current_step.is_not(None))
    free = (Job.lease_until.is_(None)) | (Job.lease_until < now)
    due = case((and_(free, (Job.next_run_at.is_(None)) | (Job.next_run_at <= now)), 1), else_=0)
    held = case((Job.lease_until >= now, 1), else_=0)
    oldest = func.min(case((due == 1, func.coalesce(Job.next_run_at, Job.created_at))))
    rows = session.execute(
        select(Job.current_step, func.sum(due), func.sum(held), func.count(), oldest)
        .where(live).group_by(Job.current_step).order_by(Job.current_step)).all()
    steps = []
    for step, due_n, held_n, waiting, oldest_at in rows:
        steps.append({"step": step, "due": int(due_n or 0), "running": int(held_n or 0),
                      "not_final": waiting,
                      "oldest_due_s": (round(max(0.0, (now - oldest_at).total_seconds()), 1)
                                       if oldest_at is not None else None)})
    return {"at": utc_text(now), "steps": steps}


def step_latency(session: Session, span: Span) -> dict[str, Any]:
    """Per step, its runs that ended in the window: from its first run to its end (a poll's
    includes the user's sign-in), p50 and p99 in seconds. One grouped statement on
    PostgreSQL; on SQLite each step's percentiles over at most ROW_CAP runs."""
    took = (_epoch(session, JobStep.finished_at) - _epoch(session, JobStep.started_at))
    window = (span.where(JobStep.finished_at), JobStep.started_at.is_not(None))
    if on_postgresql(session):
        rows = session.execute(
            select(JobStep.step, func.count(), func.percentile_cont(0.5).within_group(took),
                   func.percentile_cont(0.99).within_group(took))
            .where(*window).group_by(JobStep.step).order_by(JobStep.step)).all()
        return {**span.describe(), "steps": [
            {"step": step, "count": count, "p50_s": _round(p50, 3), "p99_s": _round(p99, 3)}
            for step, count, p50, p99 in rows]}
    counts = session.execute(select(JobStep.step, func.count()).where(*window)
                             .group_by(JobStep.step).order_by(JobStep.step)).all()
    out = []
    for step, count in counts:
        p50, p99 = _percentiles(session, select(took).where(*window, JobStep.step == step)
                                .order_by(JobStep.finished_at.desc()), (0.5, 0.99))
        out.append({"step": step, "count": count, "p50_s": _round(p50, 3),
                    "p99_s": _round(p99, 3), "sampled": count > ROW_CAP})
    return {**span.describe(), "steps": out}


def webhooks(session: Session, span: Span) -> dict[str, Any]:
    """Deliveries of the window's notifications, by status, and the failed ones' last HTTP
    status."""
    statuses = dict(session.execute(
        select(WebhookDelivery.status, func.count())
        .where(span.where(WebhookDelivery.created_at))
        .group_by(WebhookDelivery.status)).all())
    codes = session.execute(
        select(WebhookDelivery.last_status_code, func.count())
        .where(span.where(WebhookDelivery.created_at), WebhookDelivery.status == "failed")
        .group_by(WebhookDelivery.last_status_code)).all()
    retrying = session.scalar(select(func.count()).where(
        span.where(WebhookDelivery.created_at), WebhookDelivery.status == "pending",
        WebhookDelivery.attempts > 0)) or 0
    return {**span.describe(), "delivered": statuses.get("delivered", 0),
            "failed": statuses.get("failed", 0), "pending": statuses.get("pending", 0),
            "retrying": retrying,
            "failed_by_status": [{"status_code": code, "count": n} for code, n in codes]}


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)

