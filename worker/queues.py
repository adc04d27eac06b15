"""Queues, one per phase, so each pool scales on its own."""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    # DCR and proactive token renewal: rare, but everything waits on it when it is needed.
    REGISTRATION = "registration"
    # Profiles, configuration and session creation: what a user waits for on the TV screen.
    AUTHENTICATION = "authentication"
    # Profile polling: many long-lived, mostly idle sessions; must not starve the others.
    POLLING = "polling"
    # Preauthorize and authorize: the hot path when a big event starts.
    DECISIONS = "decisions"
    # Logout: rare and never urgent.
    LOGOUT = "logout"
    # Sweeper, outbox relay, webhooks: housekeeping.
    MAINTENANCE = "maintenance"


ALL_QUEUES = [q.value for q in Queue]
