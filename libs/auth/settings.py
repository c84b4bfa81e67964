"""Authentication settings shared by every service (read with the service's prefix)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from libs.auth.dev_idp import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from libs.config.settings import setting

if TYPE_CHECKING:
    from libs.auth.tokens import TokenVerifier


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthSettings:
    jwks: str = setting("AUTH_JWKS", help="JWKS location: a file path or an https:// URL of the IdP")
    issuer: str = setting("AUTH_ISSUER", default=DEFAULT_ISSUER, help="required `iss` claim")
    audience: str = setting("AUTH_AUDIENCE", default=DEFAULT_AUDIENCE, help="required `aud` claim")
    roles_claim: str = setting("AUTH_ROLES_CLAIM", default="roles", help="claim holding role names")
    teams_claim: str = setting("AUTH_TEAMS_CLAIM", default="teams", help="claim holding team memberships")
    leeway_seconds: float = setting("AUTH_LEEWAY_SECONDS", default=30.0, minimum=0, maximum=300)
    service_token_file: Path | None = setting(
        "AUTH_SERVICE_TOKEN_FILE",
        default=None,
        help="this service's own token for calls to other services (projected, rotated by the platform)",
    )


def token_verifier(auth: AuthSettings) -> TokenVerifier:
    """The TokenVerifier these settings describe (JWKS, issuer, audience, claims, leeway)."""
    from libs.auth.tokens import JwksSource, TokenVerifier, VerifierSettings

    return TokenVerifier(
        JwksSource(auth.jwks),
        VerifierSettings(
            issuer=auth.issuer,
            audience=auth.audience,
            roles_claim=auth.roles_claim,
            teams_claim=auth.teams_claim,
            leeway_seconds=auth.leeway_seconds,
        ),
    )
