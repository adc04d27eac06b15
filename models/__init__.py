"""SQLAlchemy 2 records of passflow, the engine and the session helper."""

from models.audit import AuditEntry
from models.base import Base, duration_text, utc_text, utcnow
from models.entitlements import (
    AuthSession,
    Decision,
    DecisionKind,
    Logout,
    Profile,
    SessionStatus,
    normal_code,
)
from models.jobs import (
    FINAL_STATUSES,
    ApiToken,
    Device,
    Event,
    Job,
    JobStatus,
    JobStep,
    StepStatus,
    WebhookDelivery,
)
from models.registration import Installation, Registration, SchemaCompat, ServiceProvider

__all__ = [
    "FINAL_STATUSES", "ApiToken", "AuditEntry", "AuthSession", "Base", "Decision",
    "DecisionKind", "Device", "Event", "Installation", "Job", "JobStatus", "JobStep", "Logout",
    "Profile", "normal_code",
    "Registration", "SchemaCompat", "ServiceProvider", "SessionStatus", "StepStatus",
    "WebhookDelivery", "duration_text", "utc_text", "utcnow",
]
