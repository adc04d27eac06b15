"""Dynamic Client Registration: /o/client/register and /o/client/token.

Sources: rest-apis/rest-api-dcr/apis/*.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from simulator.common import FORM, JSON, form_fields, json_body, media_type, page_rules, sim
from simulator.errors import DcrError
from simulator.fixtures import SIGNING_KEY
from simulator.headers import parse_device_info

router = APIRouter(tags=["Dynamic Client Registration"], dependencies=[Depends(page_rules)])


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _software_id(statement: str) -> str:
    """Verify the statement's signature and return its software_id."""
    try:
        header, payload, signature = statement.strip().split(".")
        expected = hmac.new(SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url(signature)):
            raise DcrError("invalid_software_statement")
        software_id = json.loads(_b64url(payload))["software_id"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise DcrError("invalid_software_statement") from exc
    if not isinstance(software_id, str):
        raise DcrError("invalid_software_statement")
    return software_id


def _require_device_info(request: Request) -> None:
    raw = request.headers.get("x-device-info")
    if raw is None or parse_device_info(raw)[0] is None:
        raise DcrError("invalid_request")


@router.post(
    "/o/client/register",
    name="dcr.register",
    status_code=201,
    summary="Retrieve client credentials",
    openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {
        "type": "object", "required": ["software_statement"],
        "properties": {"software_statement": {"type": "string"},
                       "redirect_uri": {"type": "string"}}}}}}},
)
async def register(request: Request) -> JSONResponse:
    if media_type(request) != JSON:
        raise DcrError("invalid_request")
    _require_device_info(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("software_statement"), str):
        raise DcrError("invalid_request")
    redirect_uri = body.get("redirect_uri")
    if redirect_uri is not None and not isinstance(redirect_uri, str):
        raise DcrError("invalid_redirect_uri")
    state = sim(request)
    software_id = _software_id(body["software_statement"])
    if software_id not in state.config.approved_software_ids:
        raise DcrError("unapproved_software_statement")
    client = state.register_client(software_id)
    return JSONResponse(
        {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uris": [redirect_uri] if redirect_uri else [],
            "grant_types": ["client_credentials"],
            "scopes": list(state.config.granted_scopes),
            "client_id_issued_at": int(client.issued_at),
        },
        status_code=201,
    )


@router.post(
    "/o/client/token",
    name="dcr.token",
    status_code=201,
    summary="Retrieve access token",
    openapi_extra={"requestBody": {"required": True, "content": {FORM: {"schema": {
        "type": "object", "required": ["client_id", "client_secret", "grant_type"],
        "properties": {"client_id": {"type": "string"}, "client_secret": {"type": "string"},
                       "grant_type": {"type": "string"}}}}}}},
)
async def token(request: Request) -> JSONResponse:
    fields = await form_fields(request)
    if fields is None:
        raise DcrError("invalid_request")
    _require_device_info(request)
    if any(len(v) > 1 for v in fields.values()):
        raise DcrError("invalid_request")  # "The request repeats a parameter."
    values = {k: v[0] for k, v in fields.items()}
    if not all(values.get(k) for k in ("client_id", "client_secret", "grant_type")):
        raise DcrError("invalid_request")
    if values["grant_type"] != "client_credentials":
        raise DcrError("unsupported_grant_type")
    state = sim(request)
    client = state.clients.get(values["client_id"])
    if client is None or not hmac.compare_digest(client.client_secret, values["client_secret"]):
        raise DcrError("invalid_client")
    issued = state.issue_token(client)
    return JSONResponse(
        {
            "id": client.client_id,
            "access_token": issued.value,
            "created_at": int(state.now() * 1000),
            "expires_in": int(state.config.ttl.access_token_s),
            "token_type": "bearer",
        },
        status_code=201,
    )
