"""Verified tokens are cached by digest until min(expiry, TTL); failures are never cached."""

import datetime as dt

import pytest

from libs.auth.principal import Principal
from libs.errors.domain_errors import Unauthenticated
from services.gpu_runner.api.token_cache import CachingTokenVerifier

NOW = 1_000_000.0


class Counting:
    def __init__(self, expires_in: float = 3600) -> None:
        self.calls = 0
        self.expires_in = expires_in

    def verify(self, token: str) -> Principal:
        self.calls += 1
        if token == "bad":
            raise Unauthenticated("token signature does not verify")
        at = dt.datetime.fromtimestamp(NOW, dt.UTC)
        return Principal(token, frozenset(), at, at + dt.timedelta(seconds=self.expires_in))


def test_a_verified_token_is_reused_until_the_ttl():
    clock = [NOW]
    inner = Counting()
    cache = CachingTokenVerifier(inner, ttl_seconds=60, clock=lambda: clock[0])
    assert cache.verify("t").subject == "t" and cache.verify("t").subject == "t"
    assert inner.calls == 1
    clock[0] += 61
    cache.verify("t")
    assert inner.calls == 2


def test_never_past_the_tokens_own_expiry():
    clock = [NOW]
    inner = Counting(expires_in=5)
    cache = CachingTokenVerifier(inner, ttl_seconds=60, clock=lambda: clock[0])
    cache.verify("t")
    clock[0] += 6
    cache.verify("t")
    assert inner.calls == 2


def test_failures_are_not_cached_and_the_cache_is_bounded():
    inner = Counting()
    cache = CachingTokenVerifier(inner, max_entries=2, clock=lambda: NOW)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            cache.verify("bad")
    assert inner.calls == 2
    for token in ("a", "b", "c", "a"):
        cache.verify(token)
    assert inner.calls == 2 + 4  # "a" was evicted by "c" and verified again
    assert all(len(key) == 32 for key in cache._entries)  # digests, not bearer tokens
