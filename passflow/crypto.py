"""Encryption of secrets at rest (client secrets, access tokens, media tokens, profile data,
TempPass identities), and the strength every secret passflow is given must have.

PASSFLOW_SECRET_KEY is a Fernet key (used as is) or a passphrase of at least 32 characters,
stretched with scrypt. Several keys separated by commas decrypt (the first encrypts), so keys can
be rotated (`passflow rotate-key`); only the first must be strong, the others are on their way
out. Data written by versions that stretched the key with one SHA-256 still decrypts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt


class SecretKeyMissing(RuntimeError):
    pass


# scrypt's cost (RFC 7914: N=2^15, r=8 is its interactive-login setting; 32 MiB, ~0.1 s), paid
# once per key and process. The salt is fixed, so every process derives the same key: the length
# and variety asked of a passphrase are what stand against guessing.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_SCRYPT_SALT = b"passflow/secret-key/v1"


def _is_fernet_key(value: str) -> bool:
    try:
        return len(value) == 44 and len(base64.urlsafe_b64decode(value)) == 32
    except ValueError:
        return False


@lru_cache(maxsize=16)
def _fernet(secret: str) -> Fernet:
    if _is_fernet_key(secret):
        return Fernet(secret)
    kdf = Scrypt(salt=_SCRYPT_SALT, length=32, **_SCRYPT)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(secret.encode())))


@lru_cache(maxsize=16)
def _legacy_fernet(secret: str) -> Fernet:
    """How versions before the scrypt stretch derived the key: read-only, so `rotate-key`
    moves old data onto the new derivation."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


class Cipher:
    def __init__(self, secret_keys: str):
        keys = [k.strip() for k in secret_keys.split(",") if k.strip()]
        if not keys:
            raise SecretKeyMissing("PASSFLOW_SECRET_KEY is empty")
        legacy = [_legacy_fernet(k) for k in keys if not _is_fernet_key(k)]
        self._multi = MultiFernet([_fernet(k) for k in keys] + legacy)
        self._keyed = [hashlib.sha256(b"passflow/keyed-digest/v1\n" + k.encode()).digest()
                       for k in keys]

    def digest(self, text: str) -> str:
        """A keyed digest of `text` (HMAC-SHA256 under the first key): equal texts match, and
        nothing of the text can be read back from it."""
        return hmac.new(self._keyed[0], text.encode(), hashlib.sha256).hexdigest()

    def digests(self, text: str) -> list[str]:
        """`text`'s digest under every key, the first first: what a look-up matches while a
        rotation is under way (rows digested under a key on its way out)."""
        return [hmac.new(k, text.encode(), hashlib.sha256).hexdigest() for k in self._keyed]

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._multi.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyMissing("cannot decrypt: PASSFLOW_SECRET_KEY does not match") from exc

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":")))

    def decrypt_json(self, ciphertext: str) -> Any:
        return json.loads(self.decrypt(ciphertext))

    def rotate(self, ciphertext: str) -> str:
        return self._multi.rotate(ciphertext.encode()).decode()


def cipher_from_settings() -> Cipher:
    from passflow.settings import get_settings

    key = get_settings().secret_key
    if key is None or not key.get_secret_value():
        raise SecretKeyMissing("PASSFLOW_SECRET_KEY is required to store secrets")
    return Cipher(key.get_secret_value())
