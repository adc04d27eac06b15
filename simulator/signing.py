"""The simulator's media token signing key and its certificate: made once per process, the
certificate served at `GET /_sim/media-token-certificate` for PASSFLOW_MEDIA_TOKEN_CERTIFICATE
(as a programmer gets Adobe's from its Media Token Verifier distribution)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from functools import lru_cache


@lru_cache(maxsize=1)
def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@lru_cache(maxsize=1)
def certificate_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Adobe Pass simulator media tokens")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(_key().public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .sign(_key(), hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def sign(auth_token: str) -> str:
    """`<signatureInfo>` (Base64 RSA PKCS#1 v1.5 SHA-256 over the authToken) + the authToken,
    Base64: the serialized token."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = _key().sign(auth_token.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(
        f"<signatureInfo>{base64.b64encode(signature).decode()}</signatureInfo>"
        f"{auth_token}".encode()).decode()
