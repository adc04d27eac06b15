"""The security tests attack the API: they use the API layer's fixtures."""

from tests.api.conftest import api, api_server  # noqa: F401
