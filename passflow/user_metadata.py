"""User metadata Adobe Pass sends encrypted for the programmer's certificate ("state": "enc"):
the certificate's private key (PASSFLOW_METADATA_PRIVATE_KEY, with its passphrase when it has
one) and the opening of an attribute with it."""

from __future__ import annotations

import base64
import json


def metadata_key(private_key_pem: str, passphrase: str | None = None):
    """The user metadata certificate's private key (PEM, passphrase-protected or not, as
    Adobe's openssl recipe makes it). ValueError says what is wrong, never the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(
            private_key_pem.encode(), password=passphrase.encode() if passphrase else None)
    except TypeError as exc:  # protected, and no passphrase given (or one given, not needed)
        raise ValueError("the key is passphrase-protected: set PASSFLOW_METADATA_KEY_PASSPHRASE"
                         if not passphrase else "the key is not protected: unset "
                         "PASSFLOW_METADATA_KEY_PASSPHRASE") from exc
    except ValueError as exc:
        raise ValueError("not a PEM private key, or a wrong passphrase") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the user metadata key is not an RSA private key")
    return key


def open_encrypted_attribute(private_key_pem: str, encrypted: str,
                             passphrase: str | None = None) -> object:
    """A user metadata attribute Adobe sent encrypted for the programmer's certificate:
    RSA-OAEP (SHA-256) over its JSON, Base64 (the simulator's scheme; the reference leaves it
    to the certificate). Raises ValueError when it cannot be opened."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = metadata_key(private_key_pem, passphrase)
    try:
        plain = key.decrypt(base64.b64decode(encrypted), padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    except Exception as exc:  # wrong key, not Base64, not ours
        raise ValueError("the attribute cannot be opened with the configured key") from exc
    return json.loads(plain)
