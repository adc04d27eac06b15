"""Dynamic Client Registration (rest-apis/rest-api-dcr/apis/)."""

from __future__ import annotations

from worker.adobe_pass.resources._base import Resource
from worker.adobe_pass.types import AccessToken, ClientCredentials


class DcrResource(Resource):
    def register(
        self, *, software_statement: str, redirect_uri: str | None = None
    ) -> ClientCredentials:
        """POST /o/client/register (JSON body) -> 201 client credentials."""
        body = {"software_statement": software_statement}
        if redirect_uri:
            body["redirect_uri"] = redirect_uri
        return self._client.request(
            "POST", "/o/client/register", cast=ClientCredentials, endpoint="dcr.register",
            headers=self._client._dcr_headers(), json=body, authenticated=False,
            registration=True,
        )

    def token(self, *, client_id: str, client_secret: str) -> AccessToken:
        """POST /o/client/token (form body, grant_type=client_credentials) -> 201 token."""
        return self._client.request(
            "POST", "/o/client/token", cast=AccessToken, endpoint="dcr.token",
            headers=self._client._dcr_headers(),
            data={"client_id": client_id, "client_secret": client_secret,
                  "grant_type": "client_credentials"},
            authenticated=False, registration=True,
        )
