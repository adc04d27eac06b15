"""Cookbook steps as service functions, registered in worker.jobs.STEPS by name.

Each can be called directly with a StepContext; the Celery tasks in worker.tasks only claim the
job, build the context, call the step and dispatch what comes next.
"""

from worker.steps import authentication, decisions, logout, polling, profiles

__all__ = ["authentication", "decisions", "logout", "polling", "profiles"]
