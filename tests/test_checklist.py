"""Adobe's checklist is the acceptance test. docs/checklist.md grades each of its 23 items
(met, partly, not: a grade short of met says what is missing) and cites the tests that show the
behaviour; every cited test exists, under its exact name or as the prefix of some. The grades
themselves are read in the code: the tests cited are where a reader checks them."""

from __future__ import annotations

import re
from pathlib import Path

from cli.preflight import ITEMS

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "checklist.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].isdigit():
            rows[cells[2]] = cells
    return rows


def _test_names() -> set[str]:
    return {match for path in TESTS.rglob("test_*.py")
            for match in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}


def test_every_item_is_graded_and_a_grade_short_of_met_says_why():
    rows = _rows()
    assert len(ITEMS) == 23 and sorted(rows) == sorted(item for _, item in ITEMS)
    for item, cells in rows.items():
        grade = cells[3]
        assert grade == "met" or re.match(r"^(partly|not): \w", grade), (item, grade)


def test_every_cited_test_exists():
    names = _test_names()
    missing = []
    for item, cells in _rows().items():
        cited = re.findall(r"`(test_\w+?)(\*?)`", cells[6])
        assert cited, f"{item} cites no test"
        for name, wildcard in cited:
            if not any(n == name or (wildcard and n.startswith(name)) for n in names):
                missing.append((item, name + wildcard))
    assert not missing, missing
