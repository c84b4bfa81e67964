import datetime as dt
import json
import stat
from pathlib import Path

import jwt
import pytest

from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.tokens import JwksSource, TokenVerifier, VerifierSettings
from libs.errors.domain_errors import Unauthenticated


@pytest.fixture(params=["ES256", "RS256"])
def idp(request: pytest.FixtureRequest, tmp_path: Path) -> DevIdentityProvider:
    return DevIdentityProvider(tmp_path / "idp", algorithm=request.param)


def _verifier(idp: DevIdentityProvider) -> TokenVerifier:
    return TokenVerifier(JwksSource(str(idp.jwks_path)), VerifierSettings(issuer=idp.issuer, audience=idp.audience))


def test_valid_token_gives_principal(idp: DevIdentityProvider) -> None:
    token = idp.issue("alice", ["researcher", "reviewer"], name="Alice A.", teams=["oncology"])
    p = _verifier(idp).verify(token)
    assert p.subject == "alice"
    assert p.teams == {"oncology"}
    assert p.roles == {"researcher", "reviewer"}
    assert p.display == "Alice A."
    assert p.kind == "user"
    assert p.authenticated_within(5)


def test_service_token_is_a_service_identity(idp: DevIdentityProvider) -> None:
    p = _verifier(idp).verify(idp.service_token("deployer"))
    assert (p.subject, p.kind, p.roles) == ("service:deployer", "service", frozenset({"service"}))


def _expect(idp: DevIdentityProvider, token: str, fragment: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        _verifier(idp).verify(token)
    assert fragment in err.value.message
    return err.value.message


def test_expired_token(idp: DevIdentityProvider) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    _expect(idp, idp.issue("alice", ["researcher"], issued_at=past), "token expired")


def test_not_yet_valid_token(idp: DevIdentityProvider) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    _expect(idp, idp.issue("alice", ["researcher"], not_before=later), "not valid yet")


def test_wrong_audience_and_issuer(idp: DevIdentityProvider) -> None:
    _expect(idp, idp.issue("alice", [], audience="someone-else"), "audience is wrong")
    _expect(idp, idp.issue("alice", [], issuer="https://evil.example"), "issuer is wrong")


def test_token_from_another_idp_is_refused(idp: DevIdentityProvider, tmp_path: Path) -> None:
    other = DevIdentityProvider(tmp_path / "other", algorithm=idp.algorithm)
    _expect(idp, other.issue("mallory", ["platform-admin"]), "unknown key id")


def test_token_signed_by_another_key_with_our_kid_is_refused(idp: DevIdentityProvider, tmp_path: Path) -> None:
    other = DevIdentityProvider(tmp_path / "other", algorithm=idp.algorithm)
    forged = other.issue("mallory", ["platform-admin"])
    header = jwt.get_unverified_header(forged)
    claims = jwt.decode(forged, options={"verify_signature": False})
    forged = jwt.encode(claims, other._key, algorithm=header["alg"], headers={"kid": idp.kid})
    _expect(idp, forged, "signature does not verify")


def test_symmetric_and_unsigned_algorithms_are_refused(idp: DevIdentityProvider) -> None:
    claims = jwt.decode(idp.issue("alice", []), options={"verify_signature": False})
    # Classic confusion attack: HMAC "signed" with the public key's bytes.
    hs = jwt.encode(claims, "public-key-bytes", algorithm="HS256", headers={"kid": idp.kid})
    _expect(idp, hs, "algorithm 'HS256' is not accepted")
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": idp.kid})  # "" is no key
    _expect(idp, unsigned, "algorithm 'none' is not accepted")


def test_garbage_and_missing_claims(idp: DevIdentityProvider) -> None:
    _expect(idp, "not-a-jwt", "malformed bearer token")
    token = idp.issue("alice", [], extra={"roles": "researcher reviewer"})
    assert _verifier(idp).verify(token).roles == {"researcher", "reviewer"}
    bad_roles = idp.issue("alice", [], extra={"roles": {"a": 1}})
    _expect(idp, bad_roles, "must be a list of role names")


def test_message_never_echoes_the_token(idp: DevIdentityProvider) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = idp.issue("alice", ["researcher"], issued_at=past)
    assert token not in _expect(idp, token, "expired")


def test_key_persists_and_is_private(tmp_path: Path) -> None:
    first = DevIdentityProvider(tmp_path / "idp")
    second = DevIdentityProvider(tmp_path / "idp")
    assert first.kid == second.kid
    (key_file,) = (tmp_path / "idp").glob("signing-key-*.pem")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    jwks = json.loads(first.jwks_path.read_text())
    assert [k["kid"] for k in jwks["keys"]] == [first.kid]
    assert "d" not in jwks["keys"][0], "the JWKS must hold only the public key"


def test_recent_authentication_window(idp: DevIdentityProvider) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    p = _verifier(idp).verify(idp.issue("alice", ["qa-approver"], issued_at=old))
    assert not p.authenticated_within(15)
    assert p.authenticated_within(30)
