"""Adobe's reference pages read as rules: what each call must carry, and which page says so.

Three kinds of page require things of a call, and where they differ every one holds (the union
rule, docs/checklist.md):
- the call's API page: its request table marks each header and parameter `required` or not;
- the checklist: "Send the X header for every REST API v2 request" (items 16-18);
- the flow pages: "Refer to the [call](its API page) ... All the _required_ headers, like `A`,
  `B`", which name headers for the call they refer to, whatever its own page says.

`simulator.rules` holds the same table, written out with its citations;
tests/simulator/test_rules.py compares the two both ways.
"""

from __future__ import annotations

import html
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# Adobe's pages: shared/ beside the checkout (as CI lays it), or where the variable says.
REFERENCE = Path(os.environ.get(
    "PASSFLOW_ADOBE_REFERENCE",
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "adobe-pass")).resolve()
CHECKLIST = "rest-apis/rest-api-v2/rest-api-v2-checklist.md"
# Performed in a user agent: a browser navigates there, carrying none of an application's
# headers (its page lists User-Agent only). It is no request the application makes.
USER_AGENT_PAGE = ("rest-apis/rest-api-v2/apis/sessions-apis/"
                   "rest-api-v2-sessions-apis-perform-authentication-in-user-agent.md")

_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_TH = re.compile(r"<th[^>]*>([^<]*)</th>")
_TD = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_TAG = re.compile(r"<[^>]+>")
_EVERY = re.compile(r"Send the <a [^>]*>([^<]+)</a> header for every REST API v2 request")
_REFER = re.compile(r"Refer to the \[[^\]]+\]\(([^)]+\.md)[^)]*\)")
_REQUIRED_HEADERS = re.compile(r"All the _required_ headers, like ([^\n]+)")


@dataclass
class Call:
    page: str  # relative to REFERENCE
    method: str
    path: str
    # name -> the pages that require it on this call
    headers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    listed: set[str] = field(default_factory=set)  # every header the API page names
    query: set[str] = field(default_factory=set)  # required query parameters
    body: set[str] = field(default_factory=set)  # required body parameters
    content_type: str | None = None  # "It must be <media type>" of its Content-Type row
    # the page documents an answer naming the parameters still missing (they may come later)
    missing_parameters_answer: bool = False

    @property
    def rest_api_v2(self) -> bool:
        return "/rest-api-v2/apis/" in self.page and self.page != USER_AGENT_PAGE


def _text(cell: str) -> str:
    return html.unescape(_TAG.sub(" ", cell)).strip()


def _names(cell: str) -> list[str]:
    """A header cell may name two alternatives: `Adobe-Subject-Token<br/>or<br/>X-Roku-...`."""
    return [part.strip() for part in re.split(r"<br\s*/?>\s*or\s*<br\s*/?>", cell)
            if part.strip()]


def _api_call(page: Path) -> Call | None:
    text = page.read_text(encoding="utf-8")
    if "## Request" not in text:
        return None
    request = text.split("## Request", 1)[1].split("## Response", 1)[0]
    rel = page.relative_to(REFERENCE).as_posix()
    section, values = None, {}
    call = Call(page=rel, method="", path="",
                missing_parameters_answer="missingParameters" in text)
    for row in _ROW.findall(request):
        heading = _TH.findall(row)
        if heading:
            section = heading[0].strip()
            continue
        cells = _TD.findall(row)
        if len(cells) < 2:
            continue
        name, presence = _text(cells[0]), _text(cells[-1]).split()[-1:]
        required = presence == ["required"]
        if section == "HTTP":
            values[name] = _text(cells[1])
        elif section == "Headers":
            must = re.search(r"It must be ([\w.+/-]+)", _text(cells[1]))
            if name == "Content-Type" and must:
                call.content_type = must.group(1).rstrip(".")
            for header in _names(cells[0]):
                header = _text(header)
                call.listed.add(header)
                if required:
                    call.headers[header].add(rel)
        elif section == "Query Parameters" and required:
            call.query.add(name)
        elif section == "Body Parameters" and required:
            call.body.add(name)
    call.method, call.path = values.get("method", ""), values.get("path", "")
    return call


def calls() -> dict[str, Call]:
    """Every call of the API pages (DCR and REST API V2), keyed by `METHOD path`, with what
    each page requires of it."""
    assert (REFERENCE / CHECKLIST).is_file(), (
        f"Adobe's reference pages are not at {REFERENCE}: put shared/ beside the checkout, or "
        "set PASSFLOW_ADOBE_REFERENCE")
    found: dict[str, Call] = {}
    for page in sorted(REFERENCE.glob("rest-apis/*/apis/**/*.md")):
        call = _api_call(page)
        if call is not None and call.path:
            found[f"{call.method} {call.path}"] = call
    by_page = {call.page: call for call in found.values()}
    checklist = (REFERENCE / CHECKLIST).read_text(encoding="utf-8")
    for header in _EVERY.findall(checklist):
        for call in found.values():
            if call.rest_api_v2:
                call.headers[header].add(CHECKLIST)
    for flow in sorted(REFERENCE.glob("rest-apis/rest-api-v2/flows/**/*.md")):
        _flow_rules(flow, by_page)
    return found


def _flow_rules(flow: Path, by_page: dict[str, Call]) -> None:
    """The flow's "Refer to the [call](page) ... All the _required_ headers, like `A`, `B`"
    blocks: each names headers its call requires."""
    rel = flow.relative_to(REFERENCE).as_posix()
    text = flow.read_text(encoding="utf-8")
    for block in re.split(r"\n(?=\s*\d+\.\s|\s*>\s*\[!)", text):
        refer = _REFER.search(block)
        listed = _REQUIRED_HEADERS.search(block)
        if refer is None or listed is None:
            continue
        target = (flow.parent / refer.group(1)).resolve()
        try:
            call = by_page.get(target.relative_to(REFERENCE).as_posix())
        except ValueError:
            continue
        if call is None:
            continue
        for header in re.findall(r"`([A-Za-z-]+)`", listed.group(1)):
            call.headers[header].add(rel)
