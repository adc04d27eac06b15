"""Profiles API: all profiles, the profile of one MVPD, the profile made with a code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.adobe_pass.headers import Device, device_headers, temppass_identity
from worker.adobe_pass.resources._base import Resource, seg
from worker.adobe_pass.types import Profiles


def _headers(device: Device, identity: Mapping[str, Any] | str | None, *,
             single_sign_on: bool = True) -> dict[str, str]:
    # The pages of all profiles and of one MVPD's list the single sign-on headers and the
    # partner status; the look-up by code lists neither (the device headers go on all three).
    headers = device_headers(device, sso=single_sign_on, partner=single_sign_on)
    if identity is not None:
        headers["AP-TempPass-Identity"] = temppass_identity(identity)
    return headers


class ProfilesResource(Resource):
    def list(self, service_provider: str, *, device: Device) -> Profiles:
        """GET /api/v2/{serviceProvider}/profiles."""
        return self._client.request(
            "GET", f"/api/v2/{seg(service_provider)}/profiles", cast=Profiles,
            endpoint="profiles.list", headers=_headers(device, None),
        )

    def for_mvpd(self, service_provider: str, mvpd: str, *, device: Device,
                 temppass_identity: Mapping[str, Any] | str | None = None) -> Profiles:
        """GET /api/v2/{serviceProvider}/profiles/{mvpd}."""
        return self._client.request(
            "GET", f"/api/v2/{seg(service_provider)}/profiles/{seg(mvpd)}", cast=Profiles,
            endpoint="profiles.mvpd", headers=_headers(device, temppass_identity),
        )

    def for_code(self, service_provider: str, code: str, *, device: Device,
                 temppass_identity: Mapping[str, Any] | str | None = None) -> Profiles:
        """GET /api/v2/{serviceProvider}/profiles/code/{code}."""
        return self._client.request(
            "GET", f"/api/v2/{seg(service_provider)}/profiles/code/{seg(code)}", cast=Profiles,
            endpoint="profiles.code",
            # Its page lists no device header, the checklist's every-request items (17, 18)
            # and both basic authentication flows do: they go on (the union rule).
            headers=_headers(device, temppass_identity, single_sign_on=False),
        )
