"""Operator passwords: Argon2id hashes (argon2-cffi's defaults, RFC 9106's second choice).

A sign-in for a name that does not exist still verifies a password against a fixed hash, so
the answer takes as long as for a real operator.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from scanpay.domain.operators import check_password


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # Argon2id, time_cost 3, 64 MiB, parallelism 4


@cache
def _decoy() -> str:
    return _hasher().hash("not a password of anyone's, only for the timing")


def hash_password(password: str) -> str:
    """The Argon2id hash of a password that follows the rules (ValidationError if not)."""
    return _hasher().hash(check_password(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (None: no such operator)."""
    try:
        return _hasher().verify(password_hash or _decoy(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)
