"""Adobe's checklist graded by behaviour: a pytest plugin (tests/conftest.py registers it).

docs/checklist.md cites, for each of the 23 items, the tests that show passflow's behaviour.
When a run collects every item's tests (the whole suite, `make test`), it fails unless each of
them passed: skipped, failed or erroring, the item's grade is not shown, and the run says which
items and tests. A run of part of the suite (`-k`, `-m "not slow"`, one file) is not graded."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "checklist.md"


def rows(doc: Path = DOC) -> dict[str, list[str]]:
    """Item name -> its table row's cells."""
    found = {}
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].isdigit():
            found[cells[2]] = cells
    return found


def citations(cells: list[str]) -> list[tuple[str, bool]]:
    """The tests a row cites: (name, is a prefix)."""
    return [(name, bool(star)) for name, star in re.findall(r"`(test_\w+?)(\*?)`", cells[6])]


def _cites(name: str, prefix: bool, test: str) -> bool:
    return test == name or (prefix and test.startswith(name))


class ChecklistGate:
    def __init__(self, doc: Path = DOC) -> None:
        self.doc = doc
        self.cited: dict[str, set[str]] = {}  # item -> node ids of the tests it cites
        self.bad: dict[str, str] = {}  # node id -> how it ended, when not passed

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items) -> None:
        by_item: dict[str, set[str]] = defaultdict(set)
        graded = {item: citations(cells) for item, cells in rows(self.doc).items()}
        for test in items:
            name = test.originalname if hasattr(test, "originalname") else test.name
            for item, cited in graded.items():
                if any(_cites(n, p, name) for n, p in cited):
                    by_item[item].add(test.nodeid)
        # Graded only when every cited name matched a collected test.
        whole = all(
            all(any(_cites(n, p, getattr(t, "originalname", t.name)) for t in items)
                for n, p in cited)
            for cited in graded.values())
        self.cited = dict(by_item) if whole else {}

    def pytest_runtest_logreport(self, report) -> None:
        if not self.cited:
            return
        if report.failed:
            self.bad[report.nodeid] = f"{report.when} failed"
        elif report.skipped and report.nodeid not in self.bad:
            self.bad[report.nodeid] = "skipped"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        if not self.cited:
            return
        unshown = {item: sorted(ids & self.bad.keys()) for item, ids in self.cited.items()}
        unshown = {item: ids for item, ids in unshown.items() if ids}
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"Adobe's checklist: {len(self.cited) - len(unshown)} of "
                                f"{len(self.cited)} items shown by their tests")
            for item, ids in unshown.items():
                reporter.write_line(f"  not shown: {item}: " + ", ".join(
                    f"{i} ({self.bad[i]})" for i in ids))
        if unshown and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
