"""Passwords, random tokens and their hashes: the only place that knows how secrets are stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

# Hashes written before argon2id: still verified, replaced at the next successful log-in.
_SCRYPT_MAXMEM = 256 * 1024 * 1024
# Longer input is cut before hashing: the cost of a check must not grow with what an attacker sends.
PASSWORD_INPUT_MAX = 256


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    """argon2id with OWASP's first recommendation (m=19 MiB, t=2, p=1): ~25 ms of one core, so a few hundred
    ms at Lambda's CPU share, well inside the response floor (README, Security). Parameters live in the hash.
    Imported on the first password check: loading argon2's C binding is ~0.1 s of a cold start that most
    requests (a page, a single sign-on, a token) do not need."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)


def hash_password(password: str) -> str:
    """``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>``, a fresh random salt per call."""
    return _hasher().hash(password[:PASSWORD_INPUT_MAX])


def verify_password(password: str, stored: str | None) -> bool:
    """Constant work whether or not an account exists: without a stored hash a dummy one is checked."""
    password = password[:PASSWORD_INPUT_MAX]
    if not stored:
        _check(password, _dummy_hash())
        return False
    return _check(password, stored)


def needs_rehash(stored: str) -> bool:
    """True for a hash made with other parameters or the old scheme: store a new one at the next log-in."""
    from argon2.exceptions import InvalidHashError

    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _hasher().check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _check(password: str, stored: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    if stored.startswith("scrypt$"):
        return _check_scrypt(password, stored)
    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_scrypt(password: str, stored: str) -> bool:
    try:
        _, log2_n, r, p, salt, key = stored.split("$")
        computed = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=2 ** int(log2_n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=32,
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed, _unb64(key))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    """32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def address_key(email: str) -> str:
    """What rate-limit records hold of an email address: a short hash, not the address."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
