"""The fixed rules of running steps, each with its reason. Operators tune the PASSFLOW_* settings
(passflow.settings); these are the constants behind them, in one place.
"""

from __future__ import annotations

import random

# Throttling ---------------------------------------------------------------------------------------
# A play waits for its device's request budget in order of arrival (worker.throttle) up to
# PASSFLOW_THROTTLE_DEADLINE_S, not a count of reruns. Adobe's 429s are an error class of their
# own, with the same budget as other retryable errors (PASSFLOW_STEP_RETRIES).

# A device's queue for request budget (worker.throttle): a waiter that has not come back this long
# after its turn (its job ended, or moved on) is dropped, so it holds up nobody.
THROTTLE_GRACE_S = 10.0

# Retries ------------------------------------------------------------------------------------------
# Backoff of a step after a retryable failure (5xx, timeout, Redis or pool timeout): 2, 4, 8 ...
# seconds, capped, with jitter so a fleet that failed together does not retry together.
RETRY_BACKOFF_CAP_S = 30.0


def retry_backoff(failures: int) -> float:
    return min(RETRY_BACKOFF_CAP_S, 2.0 ** (failures + 1)) * random.uniform(0.8, 1.2)


# Deadlines ----------------------------------------------------------------------------------------
# The upstream calls of a step must end within this share of its lease: the rest is left for
# applying the answer. Past it the client stops retrying and cuts its timeouts, and a step that
# still overruns its lease loses it (completion is conditional on the lease) and is rolled back.
CALL_SHARE_OF_LEASE = 0.6

# Dispatching --------------------------------------------------------------------------------------
# Steps due within this are sent at once with a short countdown; later ones stay in the table
# until the sweeper sends them. Delayed Celery messages bypass the prefetch limit and sit in a
# worker's memory (on Redis they come back after visibility_timeout): thousands of polls must
# not live there.
DIRECT_DISPATCH_MAX_S = 1.0
# A message may arrive a little before its countdown ends (clock skew between hosts).
EARLY_TOLERANCE_S = 1.0

# Batches ------------------------------------------------------------------------------------------
# A run whose jobs were claimed this late is behind: it takes other due jobs of its step along
# (up to PASSFLOW_BATCH_SIZE), so batches grow with the backlog and a lone job waits for nobody.
GATHER_WHEN_LATE_S = 0.025
# A step taken this long after it was due waited for a worker, not for Adobe: the job says so
# (which step, how long, which queue no worker consumed), and a failure's reason names it.
LATE_NOTICE_S = 60.0
# The due times one batch message of the sweeper spans: none of its jobs runs more than this
# early (a throttled play run early would only be throttled again).
BATCH_WINDOW_S = 0.1
# The most due jobs one sweep hands out (the next sweep takes the rest).
SWEEP_LIMIT = 2000

# The sweeper duty ---------------------------------------------------------------------------------
# Every worker can sweep; a lease in Redis makes one of them the sweeper at a time. A sweeper that
# dies or pauses loses it within SWEEPER_LEASE_S and another worker, checking every
# SWEEPER_FOLLOWER_CHECK_S, takes over: a few seconds without sweeps at most.
SWEEPER_LEASE_S = 5.0
SWEEPER_FOLLOWER_CHECK_S = 1.0
# /healthz and /readyz call the sweeper stale when its last sweep is older than this.
SWEEP_STALE_S = 15.0
# Worker heartbeats (worker.heartbeat): a beat every HEARTBEAT_S; a worker silent for
# WORKER_DEAD_S is dead and its jobs are taken over (three beats missed, so a busy moment is
# not a death); one not seen for WORKER_SEEN_S is forgotten.
HEARTBEAT_S = 1.0
WORKER_DEAD_S = 4.0
WORKER_SEEN_S = 3600.0
# How often the sweeper asks for the access token to be renewed ahead of its expiry.
TOKEN_UPKEEP_S = 60.0

# Sessions -----------------------------------------------------------------------------------------
# An authentication session's lifetime when Adobe leaves notAfter out ("e.g., 30 minutes", FAQ).
DEFAULT_SESSION_S = 1800
# A poll's run due this long after notAfter finds the session over and makes no call: an
# expiry is noticed on time without a poll sooner than the interval (checklist: 3-5 s).
EXPIRY_MARGIN_S = 0.5
# How long a partner single sign-on request waits for the partner framework's response
# (partner_authentication.responded) before its job expires.
PARTNER_WAIT_S = 900
# Decisions denied with action "retry" are asked again after 1, 2, 4 s (enhanced-error-codes.md).


def decision_retry_delay(round_: int) -> float:
    return float(2**round_)


# Webhooks -----------------------------------------------------------------------------------------
# A delivery is attempted this many times, waiting 2, 4, 8 ... s (5 minutes at most) between
# attempts, then recorded failed: about 4 minutes of a receiver's outage are ridden out.
WEBHOOK_MAX_ATTEMPTS = 8
# A delivery's POST waits this long for the receiver; its claim (lease) lasts a little longer.
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_LEASE_S = 30.0


def webhook_backoff(attempts: int) -> float:
    return min(300.0, 2.0 ** attempts)


# The activation page ------------------------------------------------------------------------------
# Wrong or expired codes from one client within the window before it is refused: codes are short,
# and a user typing one needs a few tries, an attacker guessing them thousands.
ACTIVATION_MAX_FAILED_TRIES = 5
# How long a device's throttle state (its burst spent) is remembered after its last call.
THROTTLE_MEMORY_S = 7 * 24 * 3600
# Logo fetches (cache misses) one client address may cause a minute on the public picker.
LOGO_FETCHES_PER_MINUTE = 30
ACTIVATION_TRIES_WINDOW_S = 15 * 60
