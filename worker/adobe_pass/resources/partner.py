"""Partner single sign-on APIs (Apple): the partner authentication request, and the profile
from the partner's authentication response."""

from __future__ import annotations

import base64

from worker.adobe_pass.headers import Device, device_headers
from worker.adobe_pass.resources._base import Resource, seg
from worker.adobe_pass.types import PartnerAction, Profiles


class PartnerResource(Resource):
    def request(self, service_provider: str, partner: str, *, device: Device,
                domain_name: str | None, redirect_url: str | None) -> PartnerAction:
        """POST /api/v2/{serviceProvider}/sessions/sso/{partner} (form body)."""
        form = {key: value for key, value in (("domainName", domain_name),
                                              ("redirectUrl", redirect_url)) if value}
        return self._client.request(
            "POST", f"/api/v2/{seg(service_provider)}/sessions/sso/{seg(partner)}",
            cast=PartnerAction, endpoint="partner.sessions",
            headers=device_headers(device, partner=True), data=form,
        )

    def profile(self, service_provider: str, partner: str, *, device: Device,
                saml_response: str) -> Profiles:
        """POST /api/v2/{serviceProvider}/profiles/sso/{partner}: `saml_response` as the
        partner framework returned it; sent Base64-encoded (then form-encoded), as the page
        asks, unless it already is."""
        return self._client.request(
            "POST", f"/api/v2/{seg(service_provider)}/profiles/sso/{seg(partner)}",
            cast=Profiles, endpoint="partner.profiles",
            headers=device_headers(device, partner=True),
            data={"SAMLResponse": _base64(saml_response)},
        )


def _base64(value: str) -> str:
    text = value.strip()
    if text.startswith("<"):  # the XML itself
        return base64.b64encode(text.encode()).decode()
    return text
