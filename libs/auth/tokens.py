"""Bearer JWT verification against a JWKS: signature (RS256/ES256), issuer, audience, exp, nbf.

Every failure is an `Unauthenticated` domain error whose message says what to fix (get a new
token, use the right audience, ...) without echoing the token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import jwt

from libs.auth.principal import Principal
from libs.errors.domain_errors import Unauthenticated, Unavailable

ALGORITHMS = ("RS256", "ES256")
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class JwksSource:
    """A JWKS from a file or an https URL, cached; refetched (rate-limited) on an unknown `kid`."""

    def __init__(self, location: str, *, min_refresh_seconds: float = 60.0, timeout: float = 5.0) -> None:
        self.location = location
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    def _fetch(self) -> dict[str, Any]:
        document: dict[str, Any]
        if self.location.startswith(("https://", "http://")):
            with urllib.request.urlopen(self.location, timeout=self._timeout) as resp:  # noqa: S310
                document = json.load(resp)
        else:
            document = json.loads(Path(self.location).read_text())
        return document

    def _refresh(self) -> None:
        try:
            document = self._fetch()
        except (OSError, ValueError) as err:
            raise Unavailable(f"cannot load the identity provider's keys from {self.location}: {err}") from err
        keys = {}
        for entry in document.get("keys", []):
            if entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWKError:
                continue  # a key type we do not accept is simply not usable
        self._keys = keys
        self._fetched_at = time.monotonic()

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self._min_refresh:
                self._refresh()
            try:
                return self._keys[kid]
            except KeyError:
                raise Unauthenticated(
                    f"token signed with unknown key id {kid!r}: get a new token from the identity provider"
                ) from None


@dataclasses.dataclass(frozen=True)
class VerifierSettings:
    issuer: str
    audience: str
    roles_claim: str = "roles"
    teams_claim: str = "teams"
    leeway_seconds: float = 30.0


class Verifier(Protocol):
    """Turns a bearer token into the `Principal` it proves, or raises Unauthenticated."""

    def verify(self, token: str) -> Principal: ...


class TokenVerifier:
    """Verifies bearer tokens and returns the `Principal` they prove."""

    def __init__(self, jwks: JwksSource, settings: VerifierSettings) -> None:
        self._jwks = jwks
        self._settings = settings

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("malformed bearer token: expected a signed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthenticated(f"token algorithm {alg!r} is not accepted; use one of {', '.join(ALGORITHMS)}")
        if "kid" not in header:
            raise Unauthenticated("token has no key id (kid) header")
        key = self._jwks.key(header["kid"])
        s = self._settings
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": _REQUIRED_CLAIMS, "verify_nbf": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired: sign in again") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (nbf/iat in the future): check the clock") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"token audience is wrong: request a token for audience {s.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"token issuer is wrong: expected {s.issuer!r}") from None
        except jwt.MissingRequiredClaimError as err:
            raise Unauthenticated(f"token lacks the required claim {err.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.InvalidTokenError as err:
            raise Unauthenticated(f"invalid token: {err}") from None
        roles = claims.get(s.roles_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated(f"token claim {s.roles_claim!r} must be a list of role names")
        teams = claims.get(s.teams_claim, [])
        if isinstance(teams, str):
            teams = teams.split()
        if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
            raise Unauthenticated(f"token claim {s.teams_claim!r} must be a list of team names")
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(roles),
            issued_at=dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
            expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
            name=str(claims.get("name", "")),
            email=str(claims.get("email", "")),
            kind="service" if "service" in roles else "user",
            token_id=str(claims.get("jti", "")),
            teams=frozenset(teams),
        )
