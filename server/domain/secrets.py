"""Secrets at rest: argon2 for passwords, SHA-256 for random tokens, Fernet for upstream
credentials. Tokens are compared by hash lookup plus a constant-time check.

An argon2 call takes tens of milliseconds of CPU and 64 MiB of memory: run on the event loop,
ten sign-ins would stall every other request of the worker. Passwords are hashed and verified
in a pool of its own, whose size bounds the memory they take (`MSP_CONSOLE_PASSWORD_HASHING_
THREADS`); calls beyond it wait their turn without holding the loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets as _random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from server.observability import PASSWORD_HASHING

T = TypeVar("T")
DEFAULT_HASHING_THREADS = 2
THREAD_NAME = "password-hashing"

_hasher = PasswordHasher()
# Verified against when the account does not exist, so a miss costs as much as a hit.
_DUMMY_HASH = _hasher.hash("not a password of anyone")
_threads = DEFAULT_HASHING_THREADS
_pool = ThreadPoolExecutor(_threads, thread_name_prefix=THREAD_NAME)


def bound_password_hashing(threads: int) -> None:
    """Let at most `threads` argon2 calls of this process run at once (the process's pool:
    calls already queued on a replaced pool still run there)."""
    global _pool, _threads
    if threads != _threads:
        old, _threads = _pool, threads
        _pool = ThreadPoolExecutor(threads, thread_name_prefix=THREAD_NAME)
        old.shutdown(wait=False)


async def in_hashing_pool(work: Callable[..., T], *args: object) -> T:
    """Run `work` in the password-hashing pool, off the event loop."""
    PASSWORD_HASHING.inc()
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, work, *args)
    finally:
        PASSWORD_HASHING.dec()


async def hash_password(password: str) -> str:
    return await in_hashing_pool(_hasher.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    return await in_hashing_pool(_verify, password_hash, password)


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
