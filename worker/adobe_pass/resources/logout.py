"""Logout API: end the profile of one MVPD."""

from __future__ import annotations

from worker.adobe_pass.headers import Device, device_headers
from worker.adobe_pass.resources._base import Resource, seg
from worker.adobe_pass.types import Logouts


class LogoutResource(Resource):
    def initiate(self, service_provider: str, mvpd: str, *, redirect_url: str,
                 device: Device) -> Logouts:
        """GET /api/v2/{serviceProvider}/logout/{mvpd}?redirectUrl=..."""
        return self._client.request(
            "GET", f"/api/v2/{seg(service_provider)}/logout/{seg(mvpd)}", cast=Logouts,
            endpoint="logout", headers=device_headers(device, sso=True),
            params={"redirectUrl": redirect_url},
        )
