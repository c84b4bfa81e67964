"""Development identity provider for the single-machine mode and the tests.

It keeps one signing key in a state directory (created on first use, mode 0600), publishes the
public half as a JWKS file that services verify against exactly as they would a real OIDC
provider's, and issues signed tokens for named users, roles and services. It is a real signer,
not a mock: the only thing missing compared with production is the login step.

    python -m libs.auth.dev_idp --state-dir ~/.causeway/idp issue alice --roles researcher
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

DEFAULT_ISSUER = "https://idp.causeway.localhost"
DEFAULT_AUDIENCE = "causeway"


class DevIdentityProvider:
    """Issues ES256 (default) or RS256 tokens; `jwks_path` is what verifiers load."""

    def __init__(
        self,
        state_dir: Path,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        algorithm: str = "ES256",
    ) -> None:
        if algorithm not in ("ES256", "RS256"):
            raise ValueError("algorithm must be ES256 or RS256")
        self.state_dir = Path(state_dir)
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._key = self._load_or_create_key()
        self.kid = self._kid()
        self.jwks_path = self.state_dir / "jwks.json"
        self._write_jwks()

    def _load_or_create_key(self) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        path = self.state_dir / f"signing-key-{self.algorithm.lower()}.pem"
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
                raise ValueError(f"{path} holds a {type(loaded).__name__}, not an EC or RSA private key")
            return loaded
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if self.algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return key

    def _public_jwk(self) -> dict[str, Any]:
        public = self._key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        else:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        return jwk

    def _kid(self) -> str:
        public = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(public).hexdigest()[:16]

    def _write_jwks(self) -> None:
        jwk = self._public_jwk() | {"kid": self.kid, "use": "sig", "alg": self.algorithm}
        tmp = self.jwks_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": [jwk]}, indent=2))
        tmp.replace(self.jwks_path)

    def issue(
        self,
        subject: str,
        roles: Iterable[str],
        *,
        teams: Iterable[str] = (),
        name: str = "",
        ttl: dt.timedelta = dt.timedelta(hours=1),
        issued_at: dt.datetime | None = None,
        not_before: dt.datetime | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed JWT for `subject` with `roles`; times and audience can be bent for tests."""
        now = issued_at or dt.datetime.now(dt.UTC)
        claims = {
            "iss": issuer or self.issuer,
            "aud": audience or self.audience,
            "sub": subject,
            "name": name or subject,
            "roles": sorted(roles),
            "teams": sorted(teams),
            "iat": int(now.timestamp()),
            "nbf": int((not_before or now).timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": secrets.token_hex(8),
        }
        claims.update(extra or {})
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid})

    def service_token(self, service: str, ttl: dt.timedelta = dt.timedelta(hours=12)) -> str:
        """A token for a platform service (role `service`), subject `service:<name>`."""
        return self.issue(f"service:{service}", ["service"], name=service, ttl=ttl)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev_idp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--issuer", default=DEFAULT_ISSUER)
    parser.add_argument("--audience", default=DEFAULT_AUDIENCE)
    sub = parser.add_subparsers(dest="command", required=True)
    issue = sub.add_parser("issue", help="print a token for a user")
    issue.add_argument("subject")
    issue.add_argument("--roles", default="researcher", help="comma-separated role names")
    issue.add_argument("--teams", default="", help="comma-separated team names")
    issue.add_argument("--minutes", type=float, default=60.0)
    sub.add_parser("jwks", help="print the JWKS file path")
    args = parser.parse_args(argv)
    idp = DevIdentityProvider(args.state_dir, issuer=args.issuer, audience=args.audience)
    if args.command == "jwks":
        print(idp.jwks_path)
    else:
        roles = [r.strip() for r in args.roles.split(",") if r.strip()]
        teams = [t.strip() for t in args.teams.split(",") if t.strip()]
        print(idp.issue(args.subject, roles, teams=teams, ttl=dt.timedelta(minutes=args.minutes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
