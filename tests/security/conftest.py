"""The security tests attack the API: they use the API layer's fixtures."""

from tests.api.conftest import activation_tries, api, api_server  # noqa: F401
