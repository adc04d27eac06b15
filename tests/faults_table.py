"""`make faults-table`: docs/faults.md from the recorded run of the suite.

`make test` records what each fault and attack test observed (tests/conftest.py writes
build/faults-run.json). Only a whole, green run is turned into the table: a partial or red run
would drop rows or show outcomes that did not hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "build" / "faults-run.json"
TABLE = ROOT / "docs" / "faults.md"

HEAD = """# Faults and attacks, as the test suite saw them

Each row is a fault or an attack that a test in `tests/` stages against real processes (SIGKILL,
a broker killed and restarted empty, a database restarted, a paused sweeper, hostile input), and
what that test observed the last time the whole suite ran green. Written by `make faults-table`
from that run's record; the figures are that run's.

"""


def render(record: dict) -> str:
    rows = sorted({row["case"]: row for row in record["rows"]}.values(),
                  key=lambda row: row["case"].lower())
    lines = [HEAD + f"Run of {record['finished_at']}: {record['tests_collected']} tests, all "
             "passed.", "", "| fault or attack | outcome observed | test |", "| --- | --- | --- |"]
    lines += [f"| {row['case']} | {row['observed']} | `{row['test']}` |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else RECORD
    if not path.exists():
        print(f"faults-table: no recorded run at {path}: run `make test` first", file=sys.stderr)
        return 1
    record = json.loads(path.read_text())
    if record["exit_status"] != 0 or not record["whole"]:
        print("faults-table: the recorded run was partial or not green; run the whole suite "
              "with `make test`", file=sys.stderr)
        return 1
    TABLE.write_text(render(record))
    print(f"faults-table: {len(record['rows'])} rows written to {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
