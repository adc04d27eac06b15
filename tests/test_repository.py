"""The repository stands alone: every project document the code and docs cite is in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A project document: under docs/, or one of the top-level pages.
CITED = re.compile(r"\b(docs/[\w.-]+\.md|README\.md|CONTRACT\.md|DEVELOPERS\.md|STYLE\.md)\b")


def test_every_cited_project_document_is_in_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    missing = {}
    for name in files:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".html", ".toml", ".yml", ".yaml", ".js"} \
                or not path.is_file():
            continue
        for cited in CITED.findall(path.read_text(errors="replace")):
            if not (ROOT / cited).is_file():
                missing.setdefault(cited, []).append(name)
    assert not missing, f"cited but not in the repository: {missing}"


def test_every_setting_is_documented():
    from passflow.settings import Settings

    documented = (ROOT / "docs" / "api.md").read_text() + (ROOT / "docs" /
                                                          "operations.md").read_text()
    undocumented = [f"PASSFLOW_{name.upper()}" for name in Settings.model_fields
                    if f"PASSFLOW_{name.upper()}" not in documented]
    assert not undocumented, f"not in docs/api.md or docs/operations.md: {undocumented}"


def test_every_test_the_readmes_flow_table_names_exists():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| flow | event | test |"):readme.index("## Where to read on")]
    named = re.findall(r"`(test_\w+)`", table)
    defined = {name for path in (ROOT / "tests").rglob("test_*.py")
               for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert len(named) >= 9 and not set(named) - defined, set(named) - defined


def test_the_job_state_table_in_the_architecture_is_the_one_the_code_checks():
    from worker.jobs import MOVES

    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### Job states", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")][1:]
    documented = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        documented[cells[0]] = {to for to, mark in zip(header, cells[1:], strict=True)
                                if mark == "yes"}
    assert documented == {str(k): {str(s) for s in v} for k, v in MOVES.items()}
