"""Each long-running process freezes its start-up heap before it serves (passflow.heap): a full
collection then walks only what was made since, instead of stopping every thread for the
hundreds of thousands of objects every process holds from its start (docs/performance.md,
"Pauses of the garbage collector")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from passflow.serving import free_port
from tests.support import TOKEN, child_env, wait_for

# The freeze does not depend on the database: one backend.
pytestmark = [pytest.mark.slow,
              pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

# Far fewer than any passflow process holds once it has imported its stack (about 170,000 for
# the API); an unfrozen process reports 0.
STARTUP_OBJECTS = 50_000


def _line(text: str, event: str) -> dict:
    for line in text.splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            return json.loads(line)
    raise AssertionError(f"no {event} line in: {text[-2000:]}")


def test_the_api_freezes_its_start_up_heap_before_it_serves(database_url, tmp_path):
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "api", "--port", str(free_port())],
                                stdout=out, stderr=subprocess.STDOUT,
                                env=child_env({"PASSFLOW_API_TOKEN": TOKEN}))
        try:
            wait_for(lambda: "api_starting" in log.read_text() or proc.poll() is not None,
                     timeout=30)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert _line(log.read_text(), "api_starting")["frozen_objects"] > STARTUP_OBJECTS


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_worker_freezes_its_start_up_heap_before_its_first_task(worker_processes, pool):
    """The threads pool runs tasks in the process that says worker_ready; each prefork child,
    forked before that, freezes its own."""
    worker = worker_processes(f"heap-{pool}", pool=pool, concurrency=2, loglevel="DEBUG")
    wait_for(lambda: worker.said("worker_ready"), timeout=30)

    def children() -> list[dict]:
        return [json.loads(line) for line in worker.log.read_text(errors="replace").splitlines()
                if '"event": "worker_child_started"' in line]

    assert _line(worker.log.read_text(errors="replace"),
                 "worker_ready")["frozen_objects"] > STARTUP_OBJECTS
    if pool == "prefork":
        wait_for(lambda: len(children()) == 2, timeout=30)
        assert all(child["frozen_objects"] > STARTUP_OBJECTS for child in children())
    else:
        assert children() == []
