"""Secrets passflow is given: refused when weak (never echoed), stretched with a real KDF, a
Fernet key used as is; data encrypted by earlier versions still readable."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken

from passflow.crypto import Cipher
from tests.support import TOKEN

STRONG_KEY = os.environ["PASSFLOW_SECRET_KEY"]


@pytest.mark.parametrize("variable,value,problem", [
    ("PASSFLOW_SECRET_KEY", "x", "at least 32 characters"),
    ("PASSFLOW_SECRET_KEY", "a" * 40, "different characters"),
    ("PASSFLOW_API_TOKEN", " " * 40, "white space"),
    ("PASSFLOW_API_TOKEN", "short-token", "at least 32 characters"),
    ("PASSFLOW_API_TOKEN", "abcdefghijklmnopqrstuvwxyzabcdef", "too predictable"),
    ("PASSFLOW_SECRET_KEY", "10e5eae13327bc0e9292355be68b6af7", "too predictable"),
    ("PASSFLOW_WEBHOOK_SECRET", "a", "at least 32 characters"),
])
@pytest.mark.parametrize("command", ["api", "worker"])
def test_weak_secrets_are_refused_at_start(command, variable, value, problem, fault_report):
    """Refused with the settings, before any database or broker is looked at (so run once,
    not per database backend)."""
    env = {**os.environ, "PASSFLOW_API_TOKEN": TOKEN,
           "PASSFLOW_WEBHOOK_URL": "https://hooks.example/passflow", variable: value}
    done = subprocess.run([sys.executable, "-m", "cli", command], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert variable in line and problem in line, line
    if len(value.strip()) >= 8:
        assert value.strip() not in line  # never echoed
    fault_report(f"`passflow {command}` with a weak {variable}",
                 "exits 2 with one line naming the setting and what is wrong, not its value")


def test_a_passphrase_is_stretched_and_a_fernet_key_used_as_is():
    passphrase = "a-passphrase-for-this-test-0123456789"
    sealed = Cipher(passphrase).encrypt("secret")
    one_sha256 = Fernet(base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest()))
    with pytest.raises(InvalidToken):  # not the old single unsalted SHA-256
        one_sha256.decrypt(sealed.encode())
    key = Fernet.generate_key().decode()
    assert Fernet(key).decrypt(Cipher(key).encrypt("secret").encode()) == b"secret"


def test_data_written_by_earlier_versions_still_decrypts():
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(STRONG_KEY.encode()).digest()))
    old = legacy.encrypt(b"written before the KDF").decode()
    cipher = Cipher(STRONG_KEY)
    assert cipher.decrypt(old) == "written before the KDF"
    rotated = cipher.rotate(old)  # `passflow rotate-key` moves it onto the stretched key
    with pytest.raises(InvalidToken):
        legacy.decrypt(rotated.encode())
    assert cipher.decrypt(rotated) == "written before the KDF"


def test_a_protected_metadata_key_without_its_passphrase_is_said_at_start():
    """Adobe's openssl recipe makes a passphrase-protected key: without the passphrase the
    settings say so in one line (it was a TypeError in a job)."""
    import pydantic
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from passflow.settings import Settings

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    protected = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"the-passphrase")).decode()
    with pytest.raises(pydantic.ValidationError, match="passphrase-protected"):
        Settings(metadata_private_key=protected)
    with pytest.raises(pydantic.ValidationError, match="wrong passphrase"):
        Settings(metadata_private_key=protected, metadata_key_passphrase="not-it")
    assert Settings(metadata_private_key=protected,
                    metadata_key_passphrase="the-passphrase").metadata_private_key
