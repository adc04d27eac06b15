"""Each flow passflow runs, declared once: its event type, the fields the event needs, the
fields stored sealed, the step its job starts with and the steps it may go through, the records
its job's result shows, and an example event's fields.

Intake (passflow.events), the engine and the job state (worker.steps, worker.jobs), the job
views (worker.views), key rotation (models.maintenance) and the tests' factories read these
declarations; a new flow is one declaration here plus its steps (docs/architecture.md, "Adding a
flow"). Step names are worker.steps.StepName values, checked against the step registry when it
is built."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from passflow.crypto import Cipher


class EventType(enum.StrEnum):
    PROFILES = "profiles.requested"
    AUTHENTICATION = "authentication.requested"
    PREAUTHORIZATION = "preauthorization.requested"
    AUTHORIZATION = "authorization.requested"
    LOGOUT = "logout.requested"
    TEMPPASS = "temppass.requested"
    PARTNER_REQUESTED = "partner_authentication.requested"
    PARTNER_RESPONDED = "partner_authentication.responded"


class Result(enum.StrEnum):
    """The records a job's result shows (worker.views)."""

    AUTHENTICATION = "authentication"  # the live code and URL, then the profile
    PROFILES = "profiles"
    DECISIONS = "decisions"
    LOGOUTS = "logouts"
    PARTNER = "partner"  # Adobe's partner request while waiting, then the profile


# Sealed in every flow (any event may carry them): what the device's platform gave it for single
# sign-on is a credential; a TempPass user identity and a partner's SAML response are personal
# data.
SEALED_FOR_ALL: tuple[str, ...] = ("device.sso", "temppass_identity", "partner_response")


@dataclass(frozen=True)
class Flow:
    type: EventType
    required: tuple[str, ...]  # beyond event_id, type and device
    first_step: str
    steps: frozenset[str]
    result: Result
    example: Mapping[str, Any]  # an event's own fields (docs, tests' factories)
    sealed: tuple[str, ...] = field(default=())  # beyond SEALED_FOR_ALL; dotted paths

    @property
    def sealed_fields(self) -> tuple[str, ...]:
        return SEALED_FOR_ALL + self.sealed


_AUTHENTICATION_STEPS = frozenset({"profiles.check", "configuration.retrieve", "sessions.create",
                                   "profiles.poll", "profiles.fetch"})

FLOWS: dict[EventType, Flow] = {flow.type: flow for flow in (
    Flow(EventType.PROFILES, (), "profiles.retrieve", frozenset({"profiles.retrieve"}),
         Result.PROFILES, {}),
    Flow(EventType.AUTHENTICATION, (), "profiles.check", _AUTHENTICATION_STEPS,
         Result.AUTHENTICATION, {"mvpd": "Cablevision"}),
    Flow(EventType.PREAUTHORIZATION, ("mvpd", "resources"), "decisions.preauthorize",
         frozenset({"decisions.preauthorize"}), Result.DECISIONS,
         {"mvpd": "Cablevision", "resources": ["REF30", "CNN"]}),
    Flow(EventType.AUTHORIZATION, ("mvpd", "resource"), "decisions.authorize",
         frozenset({"decisions.authorize"}), Result.DECISIONS,
         {"mvpd": "Cablevision", "resource": "REF30"}),
    Flow(EventType.LOGOUT, ("mvpd",), "logout.initiate", frozenset({"logout.initiate"}),
         Result.LOGOUTS, {"mvpd": "Cablevision"}),
    Flow(EventType.TEMPPASS, ("mvpd", "resource"), "temppass.authorize",
         frozenset({"temppass.authorize"}), Result.DECISIONS,
         {"mvpd": "TempPass_TEST40", "resource": "REF30"}),
    # Partner single sign-on (Apple): Adobe's request for the partner framework, then the job
    # waits for the framework's response (the next flow); Adobe's fallback goes on as an
    # authentication with a code.
    Flow(EventType.PARTNER_REQUESTED, ("partner", "device.sso.partner_framework_status"),
         "partner.request", frozenset({"partner.request", "partner.wait", "sessions.resume",
                                       "profiles.poll", "profiles.fetch"}),
         Result.PARTNER, {"partner": "Apple"}),
    # The partner flow page requires AP-Partner-Framework-Status on the profile call too.
    Flow(EventType.PARTNER_RESPONDED,
         ("partner", "partner_response", "device.sso.partner_framework_status"), "partner.profile",
         frozenset({"partner.profile"}), Result.PARTNER,
         {"partner": "Apple", "partner_response": "PHNhbWxwOlJlc3BvbnNlLz4="}),
)}


# Sealed fields at rest ---------------------------------------------------------------------------
# A sealed field `a.b` is stored as `a.b_enc` (the cipher's text of its JSON) and never in the
# clear; earlier versions stored some in the clear, which key rotation seals.

def _parent(payload: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    *parents, name = path.split(".")
    node: Any = payload
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), name


def has_sealed_values(flow: Flow, payload: Mapping[str, Any]) -> bool:
    """Whether the event (as a dict) carries a value to seal: only then is the key needed."""
    return any((parent := _parent(dict(payload), path)[0]) is not None
               and parent.get(path.rsplit(".", 1)[-1]) is not None
               for path in flow.sealed_fields)


def seal(flow: Flow, payload: dict[str, Any], cipher: Cipher | None) -> dict[str, Any]:
    """The payload as stored: each sealed field present encrypted in place (a copy)."""
    stored = _copy(payload)
    for path in flow.sealed_fields:
        parent, name = _parent(stored, path)
        if parent is None or parent.get(name) is None:
            if parent is not None:
                parent.pop(name, None)
            continue
        if cipher is None:
            raise ValueError(f"an event with {path} is stored encrypted: the key is needed")
        parent[f"{name}_enc"] = cipher.encrypt_json(parent.pop(name))
    return stored


def opened(payload: Mapping[str, Any], path: str, cipher: Cipher) -> Any:
    """A sealed field's value (None when the event has none)."""
    parent, name = _parent(dict(payload), path)
    if parent is None:
        return None
    if parent.get(f"{name}_enc"):
        return cipher.decrypt_json(parent[f"{name}_enc"])
    return parent.get(name)  # stored in the clear by an earlier version


def reseal(flow: Flow, payload: dict[str, Any], cipher: Cipher) -> dict[str, Any] | None:
    """The payload with its sealed fields under the cipher's first key (and any stored in the
    clear sealed), or None when it holds none."""
    stored = _copy(payload)
    changed = False
    for path in flow.sealed_fields:
        parent, name = _parent(stored, path)
        if parent is None:
            continue
        if parent.get(f"{name}_enc"):
            parent[f"{name}_enc"] = cipher.rotate(parent[f"{name}_enc"])
            changed = True
        elif parent.get(name) is not None:
            parent[f"{name}_enc"] = cipher.encrypt_json(parent.pop(name))
            changed = True
    return stored if changed else None


def _copy(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Copies of the dicts on the way to a sealed field (the caller's stay as they were)."""
    return {key: _copy(value) if isinstance(value, dict) else value
            for key, value in payload.items()}
