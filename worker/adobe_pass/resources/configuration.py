"""Configuration API: the MVPDs integrated with a service provider."""

from __future__ import annotations

from worker.adobe_pass.headers import Device, device_headers
from worker.adobe_pass.resources._base import Resource, seg
from worker.adobe_pass.types import Configuration


class ConfigurationResource(Resource):
    def retrieve(self, service_provider: str, *, device: Device) -> Configuration:
        """GET /api/v2/{serviceProvider}/configuration."""
        return self._client.request(
            "GET", f"/api/v2/{seg(service_provider)}/configuration", cast=Configuration,
            endpoint="configuration", headers=device_headers(device),
        )
