"""The simulator's demo software statement. Kept import-light: passflow's settings use it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

# The simulator signs and verifies software statements with this key (HS256). Real Adobe Pass
# statements are RS256 JWTs issued by the TVE Dashboard; the shape is the same.
SIGNING_KEY = b"passflow-simulator-signing-key"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_software_statement(software_id: str, *, key: bytes = SIGNING_KEY) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {
        "software_id": software_id,
        "client_name": f"{software_id} application",
        "scopes": ["api:client:v2"],
        "iss": "simulator",
    }
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64url(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


DEMO_SOFTWARE_STATEMENT = make_software_statement("passflow-demo")
