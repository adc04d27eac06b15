"""What happens when a job finishes or starts waiting for the user."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def job_finished(job_id: str) -> None:
    log.info("job %s finished", job_id)
