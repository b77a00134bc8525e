"""tests for service/identity/tokens.py: every refusal asserts its exact reason."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from service.identity.errors import InvalidToken, UnknownAuthority
from service.identity.keys import KEY_ALGORITHMS, jwk_thumbprint
from service.identity.tokens import (
    ALLOWED_ALGORITHMS,
    MAX_TOKEN_BYTES,
    MAX_TOKEN_LIFETIME,
    Principal,
    TrustedKey,
    sign_token,
    verify_token,
)
from tests.identity.jws import b64, claims, hmac_token, segment, sign, unb64, unsigned_token
from tests.identity.support import AUDIENCE, NOW, Partners, ec_signer

LEEWAY = timedelta(seconds=30)
T0 = int(NOW.timestamp())


def verify(partners: Partners, token: str, *, now: Any = NOW,
           leeway: timedelta = LEEWAY, audience: str = AUDIENCE) -> Principal:
    return verify_token(token, lookup_key=partners.registry.lookup_key, audience=audience,
                        now=now, leeway=leeway)


def refused(partners: Partners, token: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(partners, token, **kwargs)
    assert type(caught.value) is InvalidToken
    return caught.value.reason


# --- accepted ---------------------------------------------------------------------------------

def test_valid_es256_token_gives_the_principal(partners: Partners) -> None:
    principal = verify(partners, sign(partners.bka, claims()))
    assert principal == Principal(authority="DE-BKA", subject="officer-17", role="investigator",
                                  token_id="tok-1", expires_at=NOW + timedelta(seconds=600),
                                  kid=partners.bka.public.kid,
                                  key_thumbprint=partners.bka.public.thumbprint)
    # the thumbprint is RFC 7638's over the key that verified, not a value the registry states
    assert principal.key_thumbprint == jwk_thumbprint(partners.bka.public.jwk)


def test_valid_rs256_token_of_another_authority(partners: Partners) -> None:
    token = sign(partners.ocrteh, claims(iss="FR-OCRTEH", role="auditor", sub="agent-3"))
    principal = verify(partners, token)
    assert (principal.authority, principal.subject, principal.role) == (
        "FR-OCRTEH", "agent-3", "auditor")


def test_audience_list_containing_ours_is_accepted(partners: Partners) -> None:
    token = sign(partners.bka, claims(aud=["other-service", AUDIENCE]))
    assert verify(partners, token).authority == "DE-BKA"


def test_token_minted_by_the_library_verifies(partners: Partners) -> None:
    token = sign_token(claims(), private_key_pem=partners.bka.private_pem, kid=partners.bka.kid,
                       algorithm="ES256")
    assert verify(partners, token).token_id == "tok-1"


# --- leeway at the edges ----------------------------------------------------------------------

@pytest.mark.parametrize(("offset", "accepted"), [(-1, True), (0, False), (1, False)])
def test_exp_boundary_is_exp_plus_leeway(partners: Partners, offset: int,
                                         accepted: bool) -> None:
    token = sign(partners.bka, claims(exp=T0 + 600))
    now = NOW + timedelta(seconds=600) + LEEWAY + timedelta(seconds=offset)
    if accepted:
        assert verify(partners, token, now=now).subject == "officer-17"
    else:
        assert refused(partners, token, now=now) == "expired"


def test_without_leeway_a_token_is_expired_at_exp(partners: Partners) -> None:
    token = sign(partners.bka, claims(exp=T0 + 600))
    at_exp = NOW + timedelta(seconds=600)
    assert verify(partners, token, now=at_exp - timedelta(seconds=1), leeway=timedelta(0))
    assert refused(partners, token, now=at_exp, leeway=timedelta(0)) == "expired"


def test_expired(partners: Partners) -> None:
    token = sign(partners.bka, claims(iat=T0 - 3600, nbf=T0 - 3600, exp=T0 - 60))
    assert refused(partners, token) == "expired"


@pytest.mark.parametrize(("offset", "accepted"), [(0, True), (1, False)])
def test_nbf_boundary_is_now_plus_leeway(partners: Partners, offset: int,
                                         accepted: bool) -> None:
    nbf = T0 + int(LEEWAY.total_seconds()) + offset
    token = sign(partners.bka, claims(nbf=nbf, exp=nbf + 600))
    if accepted:
        assert verify(partners, token).subject == "officer-17"
    else:
        assert refused(partners, token) == "not_yet_valid"


def test_not_yet_valid_nbf_in_the_future(partners: Partners) -> None:
    token = sign(partners.bka, claims(nbf=T0 + 3600, exp=T0 + 4000))
    assert refused(partners, token) == "not_yet_valid"


def test_not_yet_valid_iat_in_the_future(partners: Partners) -> None:
    token = sign(partners.bka, claims(iat=T0 + 3600, exp=T0 + 4000))
    assert refused(partners, token) == "not_yet_valid"


def test_lifetime_longer_than_the_bound_is_refused(partners: Partners) -> None:
    lifetime = int(MAX_TOKEN_LIFETIME.total_seconds())
    assert verify(partners, sign(partners.bka, claims(exp=T0 + lifetime)))
    token = sign(partners.bka, claims(exp=T0 + lifetime + 1))
    assert refused(partners, token) == "lifetime_too_long"


def test_naive_clock_is_caller_misuse(partners: Partners) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(partners, sign(partners.bka, claims()), now=NOW.replace(tzinfo=None))


def test_negative_leeway_is_caller_misuse(partners: Partners) -> None:
    with pytest.raises(ValueError, match="leeway"):
        verify(partners, sign(partners.bka, claims()), leeway=timedelta(seconds=-1))


# --- algorithm attacks ------------------------------------------------------------------------

def test_allow_list_is_asymmetric_and_matches_registrable_keys() -> None:
    assert ALLOWED_ALGORITHMS == KEY_ALGORITHMS
    assert not {a for a in ALLOWED_ALGORITHMS if a.lower() == "none" or a.startswith("HS")}


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(partners: Partners, alg: str) -> None:
    token = unsigned_token(claims(), kid=partners.bka.kid, alg=alg)
    assert refused(partners, token) == "disallowed_algorithm"


def test_alg_missing_or_not_a_string_is_refused(partners: Partners) -> None:
    body = segment(claims())
    for header in ({"kid": partners.bka.kid}, {"alg": ["ES256"], "kid": partners.bka.kid}):
        assert refused(partners, f"{segment(header)}.{body}.") == "disallowed_algorithm"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_public_key_pem_is_refused(partners: Partners, alg: str) -> None:
    # The classic key confusion: a verifier that lets the token pick HS256 and feeds it "the
    # key" (the partner's public PEM, which anyone can read) accepts this forgery.
    token = hmac_token(partners.ocrteh.public_pem, claims(iss="FR-OCRTEH", role="auditor"),
                       kid=partners.ocrteh.kid, alg=alg)
    assert refused(partners, token) == "disallowed_algorithm"


def test_hmac_keyed_with_the_public_jwk_is_refused(partners: Partners) -> None:
    secret = partners.bka.public.to_json().encode()
    token = hmac_token(secret, claims(), kid=partners.bka.kid)
    assert refused(partners, token) == "disallowed_algorithm"


def test_disallowed_algorithm_is_refused_before_the_registry_is_asked(
        partners: Partners) -> None:
    asked: list[tuple[str, str]] = []

    def lookup(issuer: str, kid: str) -> TrustedKey:
        asked.append((issuer, kid))
        return partners.registry.lookup_key(issuer, kid)

    token = hmac_token(partners.bka.public_pem, claims(), kid=partners.bka.kid)
    with pytest.raises(InvalidToken) as caught:
        verify_token(token, lookup_key=lookup, audience=AUDIENCE, now=NOW, leeway=LEEWAY)
    assert caught.value.reason == "disallowed_algorithm"
    assert asked == []


@pytest.mark.parametrize(("signer", "alg"), [("bka", "ES384"), ("ocrteh", "RS512")])
def test_algorithm_must_match_the_registered_key(partners: Partners, signer: str,
                                                  alg: str) -> None:
    key = getattr(partners, signer)
    iss = {"bka": "DE-BKA", "ocrteh": "FR-OCRTEH"}[signer]
    # Honestly signed with the right key, but with an algorithm the key is not bound to.
    token = sign(key, claims(iss=iss), alg=alg)
    assert refused(partners, token) == "disallowed_algorithm"


def test_es256_header_on_an_rsa_key_is_refused(partners: Partners) -> None:
    forged = sign(ec_signer(), claims(iss="FR-OCRTEH"), kid=partners.ocrteh.kid)
    assert refused(partners, forged) == "disallowed_algorithm"


def test_sign_token_refuses_symmetric_algorithms(partners: Partners) -> None:
    with pytest.raises(ValueError, match="HS256"):
        sign_token(claims(), private_key_pem=partners.bka.private_pem, kid="k",
                   algorithm="HS256")


# --- keys and issuers -------------------------------------------------------------------------

def test_unknown_kid(partners: Partners) -> None:
    token = sign(partners.bka, claims(), kid="no-such-key")
    assert refused(partners, token) == "unknown_key"


def test_other_authoritys_key_with_its_own_kid(partners: Partners) -> None:
    # FR-OCRTEH signs a token claiming to be DE-BKA, naming its own (valid) kid.
    token = sign(partners.ocrteh, claims(iss="DE-BKA"))
    assert refused(partners, token) == "unknown_key"


def test_other_authoritys_key_with_the_victims_kid(partners: Partners) -> None:
    # Same forgery, naming DE-BKA's kid; alg set to match DE-BKA's key, signed by another EC key.
    token = sign(ec_signer(), claims(iss="DE-BKA"), kid=partners.bka.kid)
    assert refused(partners, token) == "bad_signature"


def test_other_authoritys_rsa_key_with_the_victims_rsa_kid(partners: Partners,
                                                           rsa_keys: list[Any]) -> None:
    token = sign(rsa_keys[1], claims(iss="FR-OCRTEH"), kid=partners.ocrteh.kid)
    assert refused(partners, token) == "bad_signature"


@pytest.mark.parametrize("iss", ["XX-NOBODY", "de-bka", "DE-BKA ", "../etc", "", "A" * 300])
def test_unknown_or_malformed_issuer(partners: Partners, iss: str) -> None:
    assert refused(partners, sign(partners.bka, claims(iss=iss))) == "unknown_issuer"


def test_missing_issuer(partners: Partners) -> None:
    assert refused(partners, sign(partners.bka, claims(iss=None))) == "missing_claim"


def test_issuer_not_a_string(partners: Partners) -> None:
    assert refused(partners, sign(partners.bka, claims(iss=["DE-BKA"]))) == "malformed"


def test_lookup_errors_are_translated_not_leaked(partners: Partners) -> None:
    def lookup(issuer: str, kid: str) -> TrustedKey:
        raise UnknownAuthority(issuer)

    with pytest.raises(InvalidToken) as caught:
        verify_token(sign(partners.bka, claims()), lookup_key=lookup, audience=AUDIENCE,
                     now=NOW, leeway=LEEWAY)
    assert caught.value.reason == "unknown_issuer"


# --- integrity --------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"role": "auditor"}, {"sub": "officer-18"},
                                    {"exp": T0 + 6000}, {"iss": "FR-OCRTEH"}])
def test_altered_payload_keeps_the_original_signature(partners: Partners,
                                                      change: dict[str, Any]) -> None:
    header, payload, signature = sign(partners.bka, claims()).split(".")
    altered = {**json.loads(unb64(payload)), **change}
    token = f"{header}.{segment(altered)}.{signature}"
    expected = "unknown_key" if "iss" in change else "bad_signature"
    assert refused(partners, token) == expected


def test_altered_header_breaks_the_signature(partners: Partners) -> None:
    _, payload, signature = sign(partners.bka, claims()).split(".")
    header = segment({"alg": "ES256", "kid": partners.bka.kid})  # typ dropped
    assert refused(partners, f"{header}.{payload}.{signature}") == "bad_signature"


@pytest.mark.parametrize("signature", ["", "AAAA", b64(b"\x00" * 64), b64(b"\x01" * 65)])
def test_garbage_signatures(partners: Partners, signature: str) -> None:
    header, payload, _ = sign(partners.bka, claims()).split(".")
    assert refused(partners, f"{header}.{payload}.{signature}") == "bad_signature"


def test_signature_not_base64url(partners: Partners) -> None:
    header, payload, _ = sign(partners.bka, claims()).split(".")
    assert refused(partners, f"{header}.{payload}.A") == "malformed"


# --- size and shape ---------------------------------------------------------------------------

def test_oversized_token_is_refused_before_parsing(partners: Partners) -> None:
    assert refused(partners, "a" * (MAX_TOKEN_BYTES + 1)) == "oversized"


def test_oversized_validly_signed_token(partners: Partners) -> None:
    token = sign(partners.bka, claims(padding="x" * MAX_TOKEN_BYTES))
    assert len(token) > MAX_TOKEN_BYTES
    assert refused(partners, token) == "oversized"


def test_validly_signed_token_at_the_size_bound_is_accepted(partners: Partners) -> None:
    fitting = ""
    for size in range(MAX_TOKEN_BYTES * 3 // 4 - 400, MAX_TOKEN_BYTES * 3 // 4):
        candidate = sign(partners.bka, claims(padding="x" * size))
        if len(candidate) <= MAX_TOKEN_BYTES:
            fitting = candidate
    assert MAX_TOKEN_BYTES - 1 <= len(fitting) <= MAX_TOKEN_BYTES
    assert verify(partners, fitting).subject == "officer-17"


def _malformed_cases() -> list[Any]:
    good_header = segment({"alg": "ES256", "kid": "k"})
    good_body = segment(claims())
    not_utf8 = b64(bytes([0xFF, 0xFE]))
    utf16 = b64(json.dumps({"alg": "ES256", "kid": "k"}).encode("utf-16"))
    duplicate_alg = segment('{"alg":"ES256","alg":"none","kid":"k"}')
    a_string, nan = segment('"a string"'), segment('{"iss":NaN}')
    return [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-segment"),
        pytest.param("a.b", id="two-segments"),
        pytest.param(f"{good_header}.{good_body}.sig.extra", id="four-segments"),
        pytest.param(f"{good_header}.a.b.c.d", id="jwe-five-segments"),
        pytest.param(f"{good_header}+.{good_body}.sig", id="not-base64url"),
        pytest.param(f"{good_header}=.{good_body}.sig", id="padding"),
        pytest.param(f"{good_header} .{good_body}.sig", id="space"),
        pytest.param(f"{good_header}.{good_body}.sïg", id="non-ascii"),
        pytest.param(f"{b64(b'not json')}.{good_body}.sig", id="header-not-json"),
        pytest.param(f"{segment('[1,2]')}.{good_body}.sig", id="header-array"),
        pytest.param(f"{not_utf8}.{good_body}.sig", id="header-not-utf8"),
        pytest.param(f"{utf16}.{good_body}.sig", id="header-utf16"),
        pytest.param(f"{duplicate_alg}.{good_body}.sig", id="duplicate-header-member"),
        pytest.param(f"{good_header}.{b64(b'garbage')}.sig", id="payload-not-json"),
        pytest.param(f"{good_header}.{a_string}.sig", id="payload-string"),
        pytest.param(f"{good_header}.{nan}.sig", id="payload-nan"),
        pytest.param(f"{good_header}.{b64(b'[' * 2000 + b']' * 2000)}.sig", id="deep-nesting"),
    ]


@pytest.mark.parametrize("token", _malformed_cases())
def test_malformed_tokens(partners: Partners, token: str) -> None:
    assert refused(partners, token) == "malformed"


@pytest.mark.parametrize("header", [
    pytest.param({"kid": None}, id="no-kid"),
    pytest.param({"kid": 7}, id="kid-not-string"),
    pytest.param({"kid": "../../etc/passwd"}, id="kid-path"),
    pytest.param({"crit": ["exp"]}, id="crit"),
    pytest.param({"typ": "JWE"}, id="typ-not-jwt"),
    pytest.param({"typ": "dpop+jwt"}, id="typ-dpop"),
])
def test_malformed_headers_on_signed_tokens(partners: Partners, header: dict[str, Any]) -> None:
    full = {"alg": "ES256", "typ": "JWT", "kid": partners.bka.kid, **header}
    full = {k: v for k, v in full.items() if v is not None}
    token = sign(partners.bka, claims(), header=full, kid=partners.bka.kid)
    if "kid" not in full:
        token = f"{segment(full)}.{token.split('.', 1)[1]}"
    assert refused(partners, token) == "malformed"


def test_duplicate_claim_in_a_signed_payload(partners: Partners) -> None:
    body = json.dumps(claims())[:-1] + ', "role": "auditor"}'
    assert refused(partners, sign(partners.bka, body)) == "malformed"


# --- claims -----------------------------------------------------------------------------------

def test_wrong_audience(partners: Partners) -> None:
    assert refused(partners, sign(partners.bka, claims(aud="another-service"))) == "bad_audience"


def test_audience_list_without_ours(partners: Partners) -> None:
    token = sign(partners.bka, claims(aud=["a", "b"]))
    assert refused(partners, token) == "bad_audience"


def test_missing_audience(partners: Partners) -> None:
    assert refused(partners, sign(partners.bka, claims(aud=None))) == "missing_claim"


def test_verifier_audience_matters(partners: Partners) -> None:
    token = sign(partners.bka, claims())
    assert refused(partners, token, audience="other-service") == "bad_audience"


@pytest.mark.parametrize("name", ["sub", "role", "exp", "iat", "jti"])
def test_missing_required_claim(partners: Partners, name: str) -> None:
    assert refused(partners, sign(partners.bka, claims(**{name: None}))) == "missing_claim"


def test_nbf_is_optional_and_iat_stands_in(partners: Partners) -> None:
    # RFC 9068 access tokens from identity providers usually carry no nbf.
    assert verify(partners, sign(partners.bka, claims(nbf=None))).subject
    assert refused(partners, sign(partners.bka, claims(nbf=None, iat=T0 + 3600,
                                                       exp=T0 + 4000))) == "not_yet_valid"


@pytest.mark.parametrize("change", [
    {"exp": "2030-05-17"}, {"exp": True}, {"nbf": [1]}, {"iat": -1}, {"exp": 10**20},
    {"sub": ""}, {"sub": 17}, {"sub": "x" * 257}, {"sub": "officer\n17"}, {"role": ["auditor"]},
    {"jti": ""}, {"aud": 5}, {"aud": [AUDIENCE, 5]},
])
def test_ill_typed_claims(partners: Partners, change: dict[str, Any]) -> None:
    assert refused(partners, sign(partners.bka, claims(**change))) == "malformed"


@pytest.mark.parametrize("role", ["auditor", "admin", "Investigator"])
def test_role_not_allowed_for_the_authority(partners: Partners, role: str) -> None:
    # DE-BKA may only assert "investigator".
    assert refused(partners, sign(partners.bka, claims(role=role))) == "role_not_allowed"
