"""The simulator's rules against Adobe's pages: the oracle is built from the pages, not from
passflow. The pages are read here (tests/simulator/pages.py) and compared with the table the
simulator enforces (simulator/rules.py), both ways: a rule the pages do not give fails, and so
does a page's requirement the table lacks."""

from __future__ import annotations

import dataclasses

from simulator import rules
from simulator.rules import ENDPOINTS, FEATURE_HEADERS, Endpoint
from tests.simulator.pages import REFERENCE, calls


def drift(endpoints: dict[str, Endpoint]) -> list[str]:
    """Where `endpoints` and the pages disagree, in words; empty when they agree."""
    found = []
    pages = calls()
    by_call = {f"{e.method} {e.path}": (name, e) for name, e in endpoints.items()}
    for key in sorted(set(pages) - set(by_call)):
        found.append(f"{key}: the pages define it, the simulator has no rule for it")
    for key in sorted(set(by_call) - set(pages)):
        found.append(f"{key}: a rule for a call no page defines")
    for key in sorted(set(pages) & set(by_call)):
        call, (name, rule) = pages[key], by_call[key]
        if rule.page != call.page:
            found.append(f"{name}: its page is {call.page}, the rule cites {rule.page}")
        wanted = {header: set(cited) for header, cited in call.headers.items()}
        have = {header: set(cited) for header, cited in rule.required.items()}
        for header in sorted(set(wanted) | set(have)):
            if wanted.get(header, set()) != have.get(header, set()):
                found.append(f"{name}: {header} required by {sorted(wanted.get(header, []))}, "
                             f"the rule cites {sorted(have.get(header, []))}")
        listed = set(FEATURE_HEADERS) & call.listed
        if listed != set(rule.listed):
            found.append(f"{name}: its page lists {sorted(listed)}, the rule {sorted(rule.listed)}")
        for what, page_value, rule_value in (
                ("content type", call.content_type, rule.content_type),
                ("required query parameters", call.query, set(rule.query)),
                ("required body parameters", call.body, set(rule.body)),
                ("missingParameters answer", call.missing_parameters_answer,
                 rule.body_may_follow)):
            if page_value != rule_value:
                found.append(f"{name}: {what} {page_value!r} on its page, {rule_value!r} here")
    return found


def test_follow_apis_references_the_simulators_rules_are_the_pages_rules():
    assert drift(ENDPOINTS) == []


def test_a_rule_removed_or_loosened_is_found():
    """The comparison can fail: each kind of change to one rule is reported."""
    code = ENDPOINTS["profiles.code"]
    without = dict(code.required)
    del without["AP-Device-Identifier"]
    removed = {**ENDPOINTS, "profiles.code": dataclasses.replace(code, required=without)}
    assert drift(removed) == [
        "profiles.code: AP-Device-Identifier required by "
        "['rest-apis/rest-api-v2/flows/basic-access-flows/rest-api-v2-basic-authentication-"
        "primary-application-flow.md', 'rest-apis/rest-api-v2/flows/basic-access-flows/"
        "rest-api-v2-basic-authentication-secondary-application-flow.md', "
        "'rest-apis/rest-api-v2/flows/single-sign-on-access-flows/rest-api-v2-single-sign-on-"
        "platform-identity-flows.md', 'rest-apis/rest-api-v2/flows/single-sign-on-access-flows/"
        "rest-api-v2-single-sign-on-service-token-flows.md', "
        "'rest-apis/rest-api-v2/rest-api-v2-checklist.md'], the rule cites []"]
    logout = ENDPOINTS["logout"]
    assert drift({**ENDPOINTS, "logout": dataclasses.replace(logout, query=())}) == [
        "logout: required query parameters {'redirectUrl'} on its page, set() here"]
    gone = {k: v for k, v in ENDPOINTS.items() if k != "sessions.retrieve"}
    assert drift(gone) == ["GET /api/v2/{serviceProvider}/sessions/{code}: the pages define it, "
                           "the simulator has no rule for it"]
    extra = {**ENDPOINTS, "decisions.authorize": dataclasses.replace(
        ENDPOINTS["decisions.authorize"], listed=FEATURE_HEADERS[:3])}
    assert drift(extra) == ["decisions.authorize: its page lists ['AD-Service-Token', "
                            "'AP-Partner-Framework-Status', 'AP-TempPass-Identity', "
                            "'Adobe-Subject-Token', 'X-Roku-Reserved-Roku-Connect-Token'], the "
                            "rule ['AD-Service-Token', 'Adobe-Subject-Token', "
                            "'X-Roku-Reserved-Roku-Connect-Token']"]


def test_every_route_of_the_simulator_is_ruled_and_every_cited_page_exists():
    from simulator.app import create_app

    def flat(routes):
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router
            yield from flat(inner.routes) if inner is not None else (route,)

    routes = {route.name: route for route in flat(create_app().routes)
              if getattr(route, "path", "").startswith(("/api/v2/", "/o/client/"))}
    assert set(routes) == set(ENDPOINTS)
    for name, route in routes.items():
        assert route.path == ENDPOINTS[name].path and ENDPOINTS[name].method in route.methods
    cited = {page for e in ENDPOINTS.values() for pages in e.required.values() for page in pages}
    cited |= {e.page for e in ENDPOINTS.values()} | {rules.DEVICE_INFO_PAGE}
    assert all((REFERENCE / page).is_file() for page in cited), sorted(
        page for page in cited if not (REFERENCE / page).is_file())


def test_follow_apis_references_every_enhanced_error_as_the_error_codes_page_lists_it():
    """Each code the simulator answers has the status and action the REST API v2 list of
    enhanced-error-codes.md gives it (`invalid_access_token_client_application`: 401,
    `application-registration`); the one code of its own (`invalid_request`, where Adobe's list
    has none) is marked as such."""
    import re

    from simulator.errors import ENHANCED

    page = (REFERENCE / "features-standard/error-reporting/enhanced-error-codes.md").read_text()
    table = page.split("### REST API v2", 1)[1].split("### (Legacy)", 1)[0]
    listed, action = {}, None
    for row in re.findall(r"^\|(.+)\|\s*$", table, re.M):
        cells = [c.strip() for c in row.split("|")]
        named = re.fullmatch(r"\*\*([\w-]+)\*\*", cells[0])
        action = named.group(1) if named else action
        code = re.fullmatch(r"\*([\w]+)\*", cells[1])
        if code and cells[2].isdigit():
            listed[code.group(1)] = (int(cells[2]), action)
    assert listed["invalid_access_token_client_application"] == (401, "application-registration")
    own = {code for code in ENHANCED if code not in listed}
    assert own == {"invalid_request"}
    assert {code: ENHANCED[code][:2] for code in ENHANCED if code in listed} == {
        code: listed[code] for code in ENHANCED if code in listed}
