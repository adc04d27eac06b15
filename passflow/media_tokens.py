"""A media token's signature, checked with the verification certificate the programmer got
from Adobe (PASSFLOW_MEDIA_TOKEN_CERTIFICATE) before a Permit is handed on.

Adobe's pages say what the Media Token Verifier does (the token is signed by Adobe with an
asymmetric key; verify the whole serialized string, its requestor, its resource, its time to
live) but not the token's layout: their sample tokens, Base64-decoded, begin with
`<signatureInfo>` and are cut there. The rest read here is the simulator's: the Base64 RSA
signature (PKCS#1 v1.5, SHA-256) in `<signatureInfo>`, then the signed `<authToken>` element.
Confirm it against a token from Adobe's prequal environment before relying on it
(docs/checklist.md, item 13)."""

from __future__ import annotations

import base64
import binascii
import html
import re
from dataclasses import dataclass
from functools import lru_cache

# A media token is a few hundred bytes; anything much larger is refused before decoding.
MAX_TOKEN_CHARS = 16_384

_LAYOUT = re.compile(rb"\A<signatureInfo>([A-Za-z0-9+/=\s]{16,2048})</signatureInfo>"
                     rb"(<authToken>.{0,16384}</authToken>)\Z", re.S)
_FIELD = re.compile(rb"<(requestorID|resourceID|mvpdId)>([^<]{0,8192})</\1>")


@dataclass(frozen=True)
class SignedToken:
    requestor: str | None
    resource: str | None
    mvpd: str | None


@lru_cache(maxsize=4)
def verification_key(pem: str):
    """The RSA public key of a PEM certificate (or of a bare PEM public key). ValueError says
    what is wrong with it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = pem.strip().encode()
    try:
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError("not a PEM certificate or public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the media token certificate's key is not RSA")
    return key


def verify(serialized: str, certificate_pem: str) -> SignedToken:
    """The token's signed fields when its signature verifies with the certificate; ValueError
    in words otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if len(serialized) > MAX_TOKEN_CHARS:
        raise ValueError("its media token is too long to be one")
    try:
        raw = base64.b64decode(serialized, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its media token is not Base64") from None
    layout = _LAYOUT.match(raw)
    if layout is None:
        raise ValueError("its media token has no signature followed by a signed authToken")
    try:
        signature = base64.b64decode(b"".join(layout.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its media token's signature is not Base64") from None
    try:
        verification_key(certificate_pem).verify(signature, layout.group(2), padding.PKCS1v15(),
                                                  hashes.SHA256())
    except InvalidSignature:
        raise ValueError("its media token's signature does not verify with "
                         "PASSFLOW_MEDIA_TOKEN_CERTIFICATE") from None
    fields = {name.decode(): html.unescape(value.decode(errors="replace"))
              for name, value in _FIELD.findall(layout.group(2))}
    return SignedToken(fields.get("requestorID"), fields.get("resourceID"), fields.get("mvpdId"))
