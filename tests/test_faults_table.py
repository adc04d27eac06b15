"""`make faults-table` turns only a whole, green recorded run into docs/faults.md."""

from __future__ import annotations

import json

from tests import faults_table


def _record(tmp_path, **overrides) -> str:
    record = {"finished_at": "2026-12-01 22:00 UTC", "exit_status": 0, "whole": True,
              "tests_collected": 3, "rows": [
                  {"case": "b fault", "observed": "old", "test": "tests/x.py"},
                  {"case": "a fault", "observed": "ok", "test": "tests/y.py"},
                  {"case": "b fault", "observed": "new", "test": "tests/x.py"}]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**record, **overrides}))
    return str(path)


def test_the_table_has_one_row_per_case_from_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(faults_table, "TABLE", tmp_path / "faults.md")
    assert faults_table.main([_record(tmp_path)]) == 0
    table = (tmp_path / "faults.md").read_text()
    assert "| a fault | ok | `tests/y.py` |\n| b fault | new | `tests/x.py` |" in table
    assert "old" not in table and "2026-12-01 22:00 UTC: 3 tests" in table


def test_a_red_or_partial_run_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(faults_table, "TABLE", tmp_path / "faults.md")
    assert faults_table.main([_record(tmp_path, exit_status=1)]) == 1
    assert faults_table.main([_record(tmp_path, whole=False)]) == 1
    assert not (tmp_path / "faults.md").exists()
