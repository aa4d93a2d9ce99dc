"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile) and random passwords.

Any thread; hashing takes tens of milliseconds and 64 MiB, so request handlers run it in a worker thread
through a `HashGate` that bounds how many run at once.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
"""argon2 hashes any length, but a megabyte 'password' is only load."""

_hasher = PasswordHasher()
# Verifying against this hash when the user does not exist keeps the timing of both answers alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class HashingBusy(Exception):
    """Too many password hashes are running or waiting; the caller answers 503 with Retry-After."""


class HashGate:
    """At most `limit` argon2 computations at once (each holds 64 MiB), at most `queue` more waiting up to
    `wait_s`; anything beyond is refused at once with `HashingBusy` instead of piling up threads and memory."""

    def __init__(self, limit: int, *, queue: int | None = None, wait_s: float = 10.0) -> None:
        if limit < 1:
            raise ValueError("the password hashing limit must be at least 1")
        self.limit = limit
        self.queue = 2 * limit if queue is None else queue
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._admitted = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self.limit + self.queue:
                raise HashingBusy
            self._admitted += 1
        try:
            if not self._slots.acquire(timeout=self.wait_s):
                raise HashingBusy
            try:
                yield
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._admitted -= 1


def _slot(gate: HashGate | None) -> contextlib.AbstractContextManager[None]:
    return gate.slot() if gate is not None else contextlib.nullcontext()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must have at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str, *, gate: HashGate | None = None) -> str:
    check_password_rules(password)
    with _slot(gate):
        return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str, *, gate: HashGate | None = None) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        stored_hash = None  # still spend the time, so the answer does not tell long from wrong
        password = password[:MAX_PASSWORD_LENGTH]
    with _slot(gate):
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def generate_password() -> str:
    return secrets.token_urlsafe(15)
