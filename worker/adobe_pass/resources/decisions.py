"""Decisions API: preauthorize (catalogue filtering) and authorize (every play)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.adobe_pass.headers import Device, device_headers, temppass_identity
from worker.adobe_pass.resources._base import Resource, seg
from worker.adobe_pass.types import Decisions


class DecisionsResource(Resource):
    def _decide(self, kind: str, service_provider: str, mvpd: str, resources: Sequence[str],
                device: Device, identity: Mapping[str, Any] | str | None) -> Decisions:
        if not resources:
            raise ValueError("at least one resource is needed")
        headers = device_headers(device, sso=True, partner=True)
        if identity is not None:
            headers["AP-TempPass-Identity"] = temppass_identity(identity)
        return self._client.request(
            "POST", f"/api/v2/{seg(service_provider)}/decisions/{kind}/{seg(mvpd)}",
            cast=Decisions, endpoint=f"decisions.{kind}", headers=headers,
            json={"resources": list(resources)},
        )

    def preauthorize(self, service_provider: str, mvpd: str, *, resources: Sequence[str],
                     device: Device) -> Decisions:
        """POST /api/v2/{serviceProvider}/decisions/preauthorize/{mvpd} (JSON body)."""
        return self._decide("preauthorize", service_provider, mvpd, resources, device, None)

    def authorize(self, service_provider: str, mvpd: str, *, resources: Sequence[str],
                  device: Device,
                  temppass_identity: Mapping[str, Any] | str | None = None) -> Decisions:
        """POST /api/v2/{serviceProvider}/decisions/authorize/{mvpd} (JSON body)."""
        return self._decide("authorize", service_provider, mvpd, resources, device,
                            temppass_identity)
