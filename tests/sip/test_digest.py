"""Tests for switch.sip.digest: RFC 7616 vectors, round trips, nonces, replay, parser robustness."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.sip.digest import (
    ALGORITHMS,
    AuthResult,
    DigestAuthenticator,
    DigestCredentials,
    DigestError,
    Verdict,
    compute_response,
    ha1,
    make_authorization,
    parse_challenge,
    parse_credentials,
    uri_matches,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "example.com"
USER = "bob"
PASSWORD = "s3cret"
RURI = "sip:example.com"
T0 = 1_700_000_000.0

RFC4475 = Path(__file__).resolve().parents[1] / "data" / "rfc4475"


def store(username: str = USER, realm: str = REALM, password: str = PASSWORD) -> dict[str, str]:
    return {alg: ha1(alg, username, realm, password) for alg in ALGORITHMS}


def auth(**kw: Any) -> DigestAuthenticator:
    kw.setdefault("secret", SECRET)
    return DigestAuthenticator(**kw)


def challenge_for(a: DigestAuthenticator, algorithm: str, now: float = T0, realm: str = REALM) -> str:
    for value in a.challenge(realm, now):
        if f"algorithm={algorithm}," in value:
            return value
    raise AssertionError(f"no {algorithm} challenge")


def verify(a: DigestAuthenticator, creds: str | DigestCredentials, *, now: float = T0 + 1, **kw: Any) -> Verdict:
    args: dict[str, Any] = {
        "method": "REGISTER",
        "request_uri": RURI,
        "realm": REALM,
        "username": USER,
        "ha1_by_algorithm": store(),
        "now": now,
    }
    args.update(kw)
    return a.verify_detailed(creds, **args)


def answer(challenge: str, *, nc: int = 1, password: str = PASSWORD, uri: str = RURI, **kw: Any) -> str:
    return make_authorization(challenge, method="REGISTER", uri=uri, username=USER, password=password, nc=nc, **kw)


def params(value: str) -> dict[str, str]:
    parsed = parse_challenge(value)
    assert parsed is not None
    return parsed


# ---------------------------------------------------------------------------------------------
# RFC 7616 section 3.9.1 ("Mufasa" / "Circle of Life")
# ---------------------------------------------------------------------------------------------

RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc_authorization(algorithm: str) -> str:
    # The RFC's Authorization header field, folded over lines as printed there, then unfolded
    # the way the SIP/HTTP parser hands it over.
    folded = f"""Digest username="Mufasa",
       realm="{RFC_REALM}",
       uri="/dir/index.html",
       algorithm={algorithm},
       nonce="{RFC_NONCE}",
       nc=00000001,
       cnonce="{RFC_CNONCE}",
       qop=auth,
       response="{RFC_RESPONSES[algorithm]}",
       opaque="{RFC_OPAQUE}\""""
    return " ".join(line.strip() for line in folded.splitlines())


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_response(algorithm: str) -> None:
    secret = ha1(algorithm, "Mufasa", RFC_REALM, "Circle of Life")
    response = compute_response(
        algorithm,
        secret,
        nonce=RFC_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert response == RFC_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_parses(algorithm: str) -> None:
    creds = parse_credentials(rfc_authorization(algorithm))
    assert creds == DigestCredentials(
        username="Mufasa",
        realm=RFC_REALM,
        nonce=RFC_NONCE,
        uri="/dir/index.html",
        response=RFC_RESPONSES[algorithm],
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
        opaque=RFC_OPAQUE,
        userhash=False,
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_client(algorithm: str) -> None:
    # The RFC's challenge (qop="auth, auth-int"); the client picks auth.
    challenge = (
        f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )
    value = make_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC_CNONCE,
    )
    assert parse_credentials(value) == parse_credentials(rfc_authorization(algorithm))


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_verifies(algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The RFC's nonce is not one of ours; trust it to exercise the whole verification path.
    monkeypatch.setattr(DigestAuthenticator, "_nonce_issued", lambda self, nonce, realm: T0)
    a = auth(algorithms=["SHA-256", "MD5"])
    result = a.verify(
        rfc_authorization(algorithm),
        method="GET",
        request_uri="/dir/index.html",
        realm=RFC_REALM,
        username="Mufasa",
        ha1_by_algorithm={algorithm: ha1(algorithm, "Mufasa", RFC_REALM, "Circle of Life")},
        now=T0 + 1,
    )
    assert result is AuthResult.OK


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(algorithm: str) -> None:
    a = auth(algorithms=ALGORITHMS)
    ch = challenge_for(a, algorithm)
    for nc in (1, 2, 3, 10):
        assert verify(a, answer(ch, nc=nc)) == Verdict(AuthResult.OK)
    assert a.tracked_nonces == 1


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_round_trip_invite_with_callable_store(algorithm: str) -> None:
    a = auth()
    ch = challenge_for(a, algorithm)
    value = make_authorization(ch, method="INVITE", uri="sip:+15551234@example.com", username=USER, password=PASSWORD)
    looked_up: list[str] = []

    def lookup(alg: str) -> str | None:
        looked_up.append(alg)
        return store().get(alg)

    verdict = verify(a, value, method="INVITE", request_uri="sip:+15551234@example.com", ha1_by_algorithm=lookup)
    assert verdict.ok
    assert looked_up == [algorithm]


def test_absent_algorithm_means_md5() -> None:
    a = auth()
    ch = challenge_for(a, "MD5").replace(", algorithm=MD5", "")
    value = answer(ch)
    assert "algorithm=MD5" in value
    assert verify(a, value.replace(", algorithm=MD5", "")).ok
    # ... and so it is refused when MD5 is not enabled.
    sha_only = auth(algorithms=["SHA-256"])
    ch = sha_only.challenge(REALM, T0)[0].replace(", algorithm=SHA-256", "")
    value = answer(ch).replace(", algorithm=MD5", "")
    assert verify(sha_only, value) == Verdict(AuthResult.FAILED, "unsupported algorithm None")


def test_algorithm_token_case_insensitive_and_uppercase_response() -> None:
    a = auth()
    value = answer(challenge_for(a, "SHA-256"))
    creds = parse_credentials(value)
    assert creds is not None
    creds = creds._replace(algorithm="sha-256", response=creds.response.upper())
    assert verify(a, creds).ok


def test_shared_secret_between_processes() -> None:
    one, two = auth(), auth()
    value = answer(challenge_for(one, "SHA-256"))
    assert verify(two, value).ok
    assert not verify(auth(secret=b"another secret, 32 bytes long!!!"), value).ok


def test_hmac_is_hmac_sha256_over_ts_random_realm() -> None:
    a = auth()
    nonce = a.make_nonce(REALM, T0)
    raw = base64.urlsafe_b64decode(nonce)
    assert len(nonce) == 44 and len(raw) == 33
    assert int.from_bytes(raw[:8], "big") == int(T0 * 1000)
    expected = hmac.new(SECRET, raw[:17] + REALM.encode(), hashlib.sha256).digest()[:16]
    assert raw[17:] == expected


# ---------------------------------------------------------------------------------------------
# Challenges
# ---------------------------------------------------------------------------------------------


def test_challenge_strongest_first_one_nonce() -> None:
    a = auth(algorithms=["MD5", "SHA-256"])
    values = a.challenge(REALM, T0)
    assert [params(v)["algorithm"] for v in values] == ["SHA-256", "MD5"]
    nonces = {params(v)["nonce"] for v in values}
    assert len(nonces) == 1
    assert values[0].startswith('Digest realm="example.com", nonce="')
    assert values[0].endswith(', algorithm=SHA-256, qop="auth"')
    assert "stale" not in values[0]
    assert a.challenge(REALM, T0)[0] != values[0]  # a fresh nonce every time


def test_challenge_stale_flag_and_realm_quoting() -> None:
    a = auth()
    values = a.challenge('we "quote" \\ this', T0, stale=True)
    assert all(v.endswith(", stale=true") for v in values)
    assert params(values[0])["realm"] == 'we "quote" \\ this'


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(algorithms=["MD5-sess"])
    with pytest.raises(ValueError):
        DigestAuthenticator(algorithms=["SHA-1"])
    with pytest.raises(ValueError):
        DigestAuthenticator(algorithms=[])
    with pytest.raises(ValueError):
        DigestAuthenticator(qops=["auth-conf"])
    with pytest.raises(ValueError):
        DigestAuthenticator(secret=b"short")
    with pytest.raises(ValueError):
        ha1("SHA-256-sess", USER, REALM, PASSWORD)
    assert DigestAuthenticator(algorithms=["md5", "Sha-256", "MD5"]).algorithms == ("SHA-256", "MD5")


# ---------------------------------------------------------------------------------------------
# Nonce lifetime, forgery, replay
# ---------------------------------------------------------------------------------------------


def test_stale_nonce_after_ttl() -> None:
    a = auth(nonce_ttl=300.0)
    value = answer(challenge_for(a, "SHA-256"))
    assert verify(a, value, now=T0 + 300.0).ok  # exactly ttl old: still fresh
    later = answer(challenge_for(a, "SHA-256"), nc=2)
    assert verify(a, later, now=T0 + 300.5) == Verdict(AuthResult.STALE, "nonce expired")


def test_stale_nonce_with_wrong_password_is_failed() -> None:
    # STALE is only for a correct digest (RFC 2617 section 3.2.1), so the guard still counts it.
    a = auth()
    value = answer(challenge_for(a, "SHA-256"), password="guess")
    assert verify(a, value, now=T0 + 1000).result is AuthResult.FAILED


def test_future_nonce_fails() -> None:
    a = auth(clock_skew=2.0)
    value = answer(challenge_for(a, "SHA-256", now=T0 + 60))
    assert verify(a, value, now=T0) == Verdict(AuthResult.FAILED, "nonce issued in the future")
    assert verify(a, value, now=T0 + 58.5).ok  # within the allowed skew


def _with_nonce(value: str, nonce: str) -> str:
    creds = parse_credentials(value)
    assert creds is not None
    return value.replace(creds.nonce, nonce)


def test_forged_nonces_fail() -> None:
    a = auth()
    ch = challenge_for(a, "SHA-256")
    genuine = params(ch)["nonce"]
    flipped = genuine[:20] + ("A" if genuine[20] != "A" else "B") + genuine[21:]
    forged = [
        flipped,
        base64.urlsafe_b64encode(bytes(33)).decode(),
        auth(secret=b"x" * 32).make_nonce(REALM, T0),  # another key
        a.make_nonce("other.example.com", T0),  # another realm
        genuine[:-1],
        genuine + "A",
        genuine.replace("-", "+").replace("_", "/") if ("-" in genuine or "_" in genuine) else genuine[:-1] + "+",
        "ä" * 44,
        "",
    ]
    for nonce in forged:
        # The client computes a correct digest over the forged nonce: only the MAC can stop it.
        value = answer(ch.replace(genuine, nonce) if nonce else ch.replace(genuine, "x"))
        if not nonce:
            value = value.replace('nonce="x"', 'nonce=""')
            with pytest.raises(DigestError):
                verify(a, value)
            continue
        assert verify(a, value) == Verdict(AuthResult.FAILED, "forged or malformed nonce"), nonce


def test_nc_replay() -> None:
    a = auth()
    ch = challenge_for(a, "SHA-256")
    first = answer(ch, nc=1)
    assert verify(a, first).ok
    assert verify(a, first) == Verdict(AuthResult.REPLAY, "nc 00000001 not above 00000001")
    assert verify(a, answer(ch, nc=5)).ok
    assert verify(a, answer(ch, nc=3)).result is AuthResult.REPLAY
    assert verify(a, answer(ch, nc=5)).result is AuthResult.REPLAY
    assert verify(a, answer(ch, nc=6)).ok


def test_failed_attempt_does_not_consume_nc() -> None:
    a = auth()
    ch = challenge_for(a, "SHA-256")
    assert verify(a, answer(ch, nc=7, password="wrong")).result is AuthResult.FAILED
    assert a.tracked_nonces == 0
    assert verify(a, answer(ch, nc=1)).ok


def test_nonce_table_eviction_treats_evicted_as_stale() -> None:
    a = auth(max_nonces=2)
    challenges = [challenge_for(a, "SHA-256", now=T0 + i) for i in range(4)]
    unused_old = challenges[0]
    for ch in challenges[1:]:
        assert verify(a, answer(ch), now=T0 + 10).ok
    assert a.tracked_nonces == 2
    # challenges[1] was evicted: a higher nc with it is stale, never fresh.
    assert verify(a, answer(challenges[1], nc=2), now=T0 + 10) == Verdict(AuthResult.STALE, "nonce state evicted")
    # A never used nonce issued before the evicted one is stale too (it could be a replay).
    assert verify(a, answer(unused_old), now=T0 + 10).result is AuthResult.STALE
    # The tracked ones still detect replays and accept higher counts.
    assert verify(a, answer(challenges[3]), now=T0 + 10).result is AuthResult.REPLAY
    assert verify(a, answer(challenges[3], nc=2), now=T0 + 10).ok
    # A nonce issued after the eviction floor is fine.
    assert verify(a, answer(challenge_for(a, "SHA-256", now=T0 + 11)), now=T0 + 12).ok
    assert a.tracked_nonces == 2


def test_nonce_table_expires() -> None:
    a = auth(nonce_ttl=300.0)
    for i in range(5):
        assert verify(a, answer(challenge_for(a, "MD5", now=T0 + i)), now=T0 + i).ok
    assert a.tracked_nonces == 5
    assert a.expire(T0 + 302.5) == 3  # issued at T0+0, +1, +2 are more than 300 s old
    assert a.tracked_nonces == 2
    # Verification also drops expired entries as it goes.
    assert verify(a, answer(challenge_for(a, "MD5", now=T0 + 400)), now=T0 + 400).ok
    assert a.tracked_nonces == 1


# ---------------------------------------------------------------------------------------------
# Legacy (RFC 2069) credentials without qop
# ---------------------------------------------------------------------------------------------


def _no_qop_challenge(a: DigestAuthenticator) -> str:
    return challenge_for(a, "MD5").replace(', qop="auth"', "")


def test_no_qop_refused_by_default() -> None:
    a = auth()
    value = answer(_no_qop_challenge(a))
    assert "qop" not in value and "nc=" not in value
    assert verify(a, value) == Verdict(AuthResult.FAILED, "credentials without qop")


def test_no_qop_allowed_single_use() -> None:
    a = auth(allow_no_qop=True)
    ch = _no_qop_challenge(a)
    value = answer(ch)
    assert verify(a, value).ok
    assert verify(a, value) == Verdict(AuthResult.REPLAY, "single-use nonce reused")
    # Not even with qop afterwards.
    assert verify(a, answer(ch.replace(", algorithm=MD5", ', algorithm=MD5, qop="auth"'), nc=9)).result is (
        AuthResult.REPLAY
    )


# ---------------------------------------------------------------------------------------------
# Wrong credentials
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_wrong_password(algorithm: str) -> None:
    a = auth()
    value = answer(challenge_for(a, algorithm), password="Circle of Life")
    assert verify(a, value) == Verdict(AuthResult.FAILED, "wrong response")


def test_wrong_realm_user_uri() -> None:
    a = auth()
    value = answer(challenge_for(a, "SHA-256"))
    assert verify(a, value, realm="other.example.com") == Verdict(AuthResult.FAILED, "realm mismatch")
    assert verify(a, value, username="alice") == Verdict(AuthResult.FAILED, "username mismatch")
    assert verify(a, value, request_uri="sip:other.example.com").reason == "uri does not match the Request-URI"
    assert verify(a, value, method="INVITE") == Verdict(AuthResult.FAILED, "wrong response")
    assert verify(a, value, ha1_by_algorithm={"MD5": store()["MD5"]}) == Verdict(
        AuthResult.FAILED, "no SHA-256 HA1 for user"
    )
    assert verify(a, value, ha1_by_algorithm=store(realm="other")).reason == "wrong response"
    # Credentials for another realm, with a nonce made for that realm, against our realm.
    theirs = answer(challenge_for(a, "SHA-256", realm="other.example.com"))
    assert verify(a, theirs).reason == "realm mismatch"


def test_uri_comparison() -> None:
    assert uri_matches("sip:bob@example.com;transport=tcp", "sip:bob@example.com;transport=tcp")
    assert uri_matches("SIP:bob@EXAMPLE.com:5060;transport=tcp", "sip:bob@example.com:5060;transport=tcp")
    assert not uri_matches("sip:BOB@example.com", "sip:bob@example.com")  # user part is case-sensitive
    assert not uri_matches("sip:bob@example.com;transport=TCP", "sip:bob@example.com;transport=tcp")
    assert not uri_matches("sips:bob@example.com", "sip:bob@example.com")
    assert not uri_matches("sip:example.com:5061", "sip:example.com")
    assert not uri_matches("/dir/index.html", "/DIR/index.html")
    a = auth()
    value = answer(challenge_for(a, "SHA-256"), uri="SIP:Example.COM")
    assert verify(a, value).ok


def test_unsupported_algorithm_qop_and_userhash() -> None:
    a = auth()
    ch = challenge_for(a, "SHA-256")
    creds = parse_credentials(answer(ch))
    assert creds is not None
    assert verify(a, creds._replace(algorithm="SHA-256-sess")).reason == "unsupported algorithm 'SHA-256-sess'"
    assert verify(a, creds._replace(algorithm="AKAv1-MD5")).result is AuthResult.FAILED
    assert verify(a, creds._replace(userhash=True)).reason == "userhash not offered"
    int_value = answer(ch.replace('qop="auth"', 'qop="auth-int"'))
    assert "qop=auth-int" in int_value
    assert verify(a, int_value).reason == "qop 'auth-int' not offered"


def test_auth_int_hashes_the_body() -> None:
    a = auth(qops=["auth", "auth-int"])
    ch = challenge_for(a, "SHA-256")
    assert ch.endswith('qop="auth,auth-int"')
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\xff\x00binary"
    value = answer(ch.replace('qop="auth,auth-int"', 'qop="auth-int"'), body=body)
    assert verify(a, value, body=body).ok
    value2 = answer(ch.replace('qop="auth,auth-int"', 'qop="auth-int"'), body=body, nc=2)
    assert verify(a, value2, body=body + b" ").reason == "wrong response"
    # Empty body: H of the empty string (RFC 3261 section 22.4).
    assert verify(a, answer(ch.replace('qop="auth,auth-int"', 'qop="auth-int"'), nc=3)).ok


def test_verify_raw_string_other_scheme_never_authenticates() -> None:
    a = auth()
    assert verify(a, "Basic Ym9iOnMzY3JldA==") == Verdict(AuthResult.FAILED, "not Digest credentials")
    with pytest.raises(DigestError):
        verify(a, 'Digest username="bob"')


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def test_unknown_scheme_rfc4475_regaut01() -> None:
    message = (RFC4475 / "regaut01.dat").read_bytes().decode()
    line = next(x for x in message.split("\r\n") if x.lower().startswith("authorization:"))
    value = line.split(":", 1)[1].strip()
    assert value == "NoOneKnowsThisScheme opaque-data=here"
    assert parse_credentials(value) is None
    assert parse_credentials("Basic dXNlcjpwYXNz") is None
    assert parse_credentials("Bearer abc.def.ghi") is None
    assert parse_challenge('Basic realm="x"') is None


def test_parser_whitespace_case_escapes() -> None:
    value = (
        'digest  USERNAME\t=\t"b\\"o\\\\b" ,Realm= "example.com",nonce ="n"\t,\turi="sip:example.com" , '
        'RESPONSE="ABCDEF0123", Algorithm=sha-256,qop="auth",NC="0000000a",cnonce=xyz,  opaque="", '
        "future-param=whatever  "
    )
    creds = parse_credentials(value)
    assert creds == DigestCredentials(
        username='b"o\\b',
        realm="example.com",
        nonce="n",
        uri="sip:example.com",
        response="ABCDEF0123",
        algorithm="sha-256",
        qop="auth",
        nc="0000000a",
        cnonce="xyz",
        opaque="",
        userhash=False,
    )
    assert parse_credentials(" \tDIGEST " + value.split(None, 1)[1]) == creds


def test_parser_username_star() -> None:
    base = 'Digest realm="r", nonce="n", uri="u", response="00"'
    creds = parse_credentials(base + ", username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, userhash=false")
    assert creds is not None and creds.username == "Jäsøn Doe" and creds.userhash is False
    with pytest.raises(DigestError):
        parse_credentials(base + ", username=\"x\", username*=UTF-8''x")
    with pytest.raises(DigestError):
        parse_credentials(base + ", username*=UTF-8''%FF%FE")
    with pytest.raises(DigestError):
        parse_credentials(base + ", username*=KOI8-R''x")
    uh = parse_credentials(base + ', username="h", userhash=TRUE')
    assert uh is not None and uh.userhash


FULL = 'Digest username="bob", realm="r", nonce="n", uri="sip:r", response="0a", qop=auth, nc=00000001, cnonce="c"'


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        "Digest ",
        "Digest,username=bob",
        '"Digest" username="bob"',
        'Digest username="bob',  # unterminated quote
        FULL.replace('cnonce="c"', 'cnonce="c'),
        FULL.replace('realm="r"', 'realm="r\\"'),  # the escape eats the closing quote
        FULL + ",",  # trailing comma
        FULL + ",,",
        FULL.replace(", ", " "),  # no commas
        FULL.replace("response=", "response"),
        FULL.replace('uri="sip:r"', "uri=sip:r"),  # ':' is not a token character
        FULL + ', username="eve"',  # duplicate
        FULL + ', Nonce="m"',  # duplicate, case-insensitively
        FULL.replace('username="bob", ', ""),  # missing username
        FULL.replace('realm="r", ', ""),
        FULL.replace('nonce="n", ', ""),
        FULL.replace('uri="sip:r", ', ""),
        FULL.replace(', response="0a"', ""),
        FULL.replace('nonce="n"', 'nonce=""'),
        FULL.replace('response="0a"', 'response="zz"'),
        FULL.replace('response="0a"', 'response=""'),
        FULL.replace("nc=00000001", "nc=1"),
        FULL.replace("nc=00000001", "nc=0000000g"),
        FULL.replace("nc=00000001", "nc=00000000"),
        FULL.replace(", nc=00000001", ""),  # qop without nc
        FULL.replace(', cnonce="c"', ""),  # qop without cnonce
        FULL.replace('realm="r"', 'realm="a\x00b"'),  # CTL in a quoted string
        FULL.replace('realm="r"', 'realm="a\r\nb"'),
        FULL + "\r\n",
        "Digest username=\"bob\" realm='r'",
        "Digest =x",
        "@@@ garbage",
        "Digest " + "a" * 9000 + "=b",
    ],
)
def test_malformed_credentials(value: str) -> None:
    with pytest.raises(DigestError) as info:
        parse_credentials(value)
    assert isinstance(info.value, ValueError)
    assert info.value.reason


def test_well_formed_reference_value_parses() -> None:
    assert parse_credentials(FULL) is not None


def test_parse_challenge_requires_realm_and_nonce() -> None:
    with pytest.raises(DigestError):
        parse_challenge('Digest realm="x"')
    with pytest.raises(DigestError):
        make_authorization("Basic realm=x", method="REGISTER", uri=RURI, username=USER, password=PASSWORD)
    with pytest.raises(ValueError):
        make_authorization(
            'Digest realm="x", nonce="n", algorithm=MD5-sess',
            method="REGISTER",
            uri=RURI,
            username=USER,
            password=PASSWORD,
        )


def test_make_authorization_quoting_and_opaque() -> None:
    ch = 'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256, opaque="op\\"aque"'
    value = make_authorization(ch, method="REGISTER", uri=RURI, username='we"ird', password="p", nc=0x1F, cnonce="cn")
    assert 'username="we\\"ird"' in value and "nc=0000001f" in value and "qop=auth," in value
    assert "algorithm=SHA-256," in value and 'opaque="op\\"aque"' in value
    creds = parse_credentials(value)
    assert creds is not None and creds.username == 'we"ird' and creds.opaque == 'op"aque'
    with pytest.raises(ValueError):
        make_authorization(ch, method="REGISTER", uri=RURI, username=USER, password="p", nc=0)


@settings(max_examples=600, deadline=None)
@given(st.text())
def test_parser_never_raises_anything_else(text: str) -> None:
    for value in (text, "Digest " + text):
        try:
            result = parse_credentials(value)
        except DigestError:
            continue
        assert result is None or isinstance(result, DigestCredentials)


_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
_token = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=12)
_sws = st.text(alphabet=" \t", max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_parser_round_trips_generated_params(data: st.DataObject) -> None:
    """Arbitrary values, quoted with escapes or sent as tokens, with random SWS, parse back."""
    required = {
        "username": data.draw(st.text(max_size=10)),
        "realm": data.draw(st.text(max_size=10)),
        "nonce": data.draw(st.text(min_size=1, max_size=10)),
        "uri": data.draw(st.text(max_size=10)),
        "response": data.draw(st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=64)),
    }
    # Quoted strings cannot carry CTLs other than HTAB (RFC 3261 section 25.1).
    required = {
        k: "".join(c for c in v if c == "\t" or not (ord(c) < 32 or ord(c) == 127)) for k, v in required.items()
    }
    if not required["nonce"]:
        required["nonce"] = "n"
    items = list(required.items())
    items = data.draw(st.permutations(items))
    pieces = []
    for name, value in items:
        shown = "".join(c.upper() if data.draw(st.booleans()) else c for c in name)
        if value and all(c in _TOKEN_CHARS for c in value) and data.draw(st.booleans()):
            rendered = value
        else:
            rendered = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        pieces.append(f"{shown}{data.draw(_sws)}={data.draw(_sws)}{rendered}")
    text = "Digest " + "".join(
        piece + (data.draw(_sws) + "," + data.draw(_sws) if i < len(pieces) - 1 else data.draw(_sws))
        for i, piece in enumerate(pieces)
    )
    creds = parse_credentials(text)
    assert creds is not None
    assert (creds.username, creds.realm, creds.nonce, creds.uri, creds.response) == tuple(
        required[k] for k in ("username", "realm", "nonce", "uri", "response")
    )
