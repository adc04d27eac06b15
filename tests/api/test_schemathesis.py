"""Property-based runs of every API operation from its own OpenAPI document: never a 5xx."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from passflow.serving import BackgroundServer
from passflow.settings import get_settings
from tests.support import TOKEN

schema = schemathesis.openapi.from_dict(create_app(get_settings(), tokens=[TOKEN]).openapi())


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_server_errors(case, api_server: BackgroundServer, api: httpx.Client):
    response = case.call(base_url=api_server.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
