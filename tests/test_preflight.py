"""`passflow preflight` against the simulator: 23 lines, one per checklist item."""

from __future__ import annotations

import os
import subprocess
import sys

from cli.preflight import ITEMS


def test_lifecycle_testing_preflight_prints_each_of_the_23_checklist_items(
        database_url: str, pass_env: str, sim):
    env = {**os.environ, "PASSFLOW_POLL_INTERVAL_S": "5"}
    done = subprocess.run([sys.executable, "-m", "cli", "preflight"], capture_output=True,
                          text=True, env=env, timeout=120)
    lines = done.stdout.splitlines()
    items = [line for line in lines if line.split(" ", 1)[0] in ("PASS", "FAIL", "DESIGN")]
    assert len(ITEMS) == len(items) == 23, done.stdout + done.stderr
    for (phase, item), line in zip(ITEMS, items, strict=True):
        assert f"{phase} / {item}:" in line
    verified = [line for line in items if line.startswith("PASS")]
    assert len(verified) >= 15 and done.returncode == 0, done.stdout
    assert "custom" in lines[0]  # the simulator is no Adobe environment


def test_polling_mechanism_configuring_preflight_fails_an_interval_outside_3_to_5_s(
        database_url: str, pass_env: str, sim):
    env = {**os.environ, "PASSFLOW_POLL_INTERVAL_S": "1"}
    done = subprocess.run([sys.executable, "-m", "cli", "preflight"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "FAIL   Authentication / Polling Mechanism Configuring" in done.stdout
