"""Verified bearer tokens remembered briefly, because inference calls are many and small.

Verifying an ES256/RS256 JWT costs a few hundred microseconds of CPU: more than the forward pass
of a small model, and paid on every ModelInfer. A client sends the same token with each request
until it expires, so the runner keeps the Principal of a token it has verified, keyed by the
token's SHA-256 (the cache holds no bearer secrets), until the token's own expiry or `ttl_seconds`,
whichever comes first. The short TTL bounds how long a key the IdP withdrew stays trusted.
Failures are never cached: a bad token is verified (and refused) every time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from libs.auth.principal import Principal


class Verifier(Protocol):
    def verify(self, token: str) -> Principal: ...


class CachingTokenVerifier:
    def __init__(
        self,
        inner: Verifier,
        *,
        ttl_seconds: float = 60.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                self._entries.move_to_end(key)
                return hit[1]
        principal = self._inner.verify(token)  # raises Unauthenticated: nothing cached
        until = min(principal.expires_at.timestamp(), now + self._ttl)
        with self._lock:
            self._entries[key] = (until, principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return principal
