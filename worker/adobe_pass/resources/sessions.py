"""Sessions API: create, resume and retrieve authentication sessions."""

from __future__ import annotations

from worker.adobe_pass.headers import Device, device_headers
from worker.adobe_pass.resources._base import Resource, seg
from worker.adobe_pass.types import SessionAction, SessionInfo


def _form(mvpd: str | None, domain_name: str | None, redirect_url: str | None) -> dict[str, str]:
    # Form-encoding URL-encodes redirectUrl, as the page requires. Absent values are left out:
    # Adobe then answers with missingParameters, to be provided on resume.
    fields = {"mvpd": mvpd, "domainName": domain_name, "redirectUrl": redirect_url}
    return {k: v for k, v in fields.items() if v}


class SessionsResource(Resource):
    def create(
        self,
        service_provider: str,
        *,
        device: Device,
        mvpd: str | None = None,
        domain_name: str | None = None,
        redirect_url: str | None = None,
    ) -> SessionAction:
        """POST /api/v2/{serviceProvider}/sessions (form body)."""
        return self._client.request(
            "POST", f"/api/v2/{seg(service_provider)}/sessions", cast=SessionAction,
            endpoint="sessions.create", headers=device_headers(device, sso=True),
            data=_form(mvpd, domain_name, redirect_url),
        )

    def resume(
        self,
        service_provider: str,
        code: str,
        *,
        device: Device,
        mvpd: str | None = None,
        domain_name: str | None = None,
        redirect_url: str | None = None,
    ) -> SessionAction:
        """POST /api/v2/{serviceProvider}/sessions/{code} (form body)."""
        return self._client.request(
            "POST", f"/api/v2/{seg(service_provider)}/sessions/{seg(code)}",
            cast=SessionAction, endpoint="sessions.resume", headers=device_headers(device),
            data=_form(mvpd, domain_name, redirect_url),
        )

    def retrieve(self, service_provider: str, code: str, *, device: Device) -> SessionInfo:
        """GET /api/v2/{serviceProvider}/sessions/{code}."""
        return self._client.request(
            "GET", f"/api/v2/{seg(service_provider)}/sessions/{seg(code)}", cast=SessionInfo,
            # The checklist's every-request headers go on too, though this page lists neither.
            endpoint="sessions.retrieve", headers=device_headers(device),
        )

    def authenticate_url(self, service_provider: str, code: str) -> str:
        """Where a user agent goes to log in: /api/v2/authenticate/{serviceProvider}/{code}."""
        return f"{self._client.base_url}/api/v2/authenticate/{seg(service_provider)}/{seg(code)}"
