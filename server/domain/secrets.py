"""Secrets at rest: argon2 for passwords, SHA-256 for random tokens, Fernet for upstream
credentials. Tokens are compared by hash lookup plus a constant-time check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

_hasher = PasswordHasher()
# Verified against when the account does not exist, so a miss costs as much as a hit.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    """A random bearer token (256 bits), prefixed so a leaked one says what it is."""
    return f"{prefix}_{_random.token_urlsafe(32)}"


MAX_TOKEN_LENGTH = 256


def well_formed_token(value: object) -> bool:
    """Whether `value` could be a bearer token of ours: printable ASCII, no spaces, bounded."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_match(expected_hash: str, token: str) -> bool:
    return hmac.compare_digest(expected_hash, token_hash(token))


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"msp-console upstream credentials\x00" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(secret_key: str, plaintext: str) -> str:
    return _fernet(secret_key).encrypt(plaintext.encode()).decode()


def decrypt(secret_key: str, ciphertext: str) -> str:
    try:
        return _fernet(secret_key).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ValueError("stored credentials cannot be decrypted with this secret key") from None
