"""Tokens without a server: minting, verifying, scoping, and where a token is found."""

from __future__ import annotations

import base64
import json
import random

import jwt
import numpy as np
import pytest

from dashboard.config import Config
from dashboard.core import auth
from dashboard.core.symbols import SymbolTable
from dashboard.errors import ConfigError, SymbolNotAllowed, Unauthorized

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
NOW = 1_800_000_000.0
TABLE = SymbolTable(["AAPL", "MSFT", "NVDA"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_payload(token: str, claims: dict[str, object]) -> str:
    """The token with its payload replaced and its signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def refused_as(reason: str, token: str | None, now: float = NOW) -> Unauthorized:
    with pytest.raises(Unauthorized) as e:
        auth.verify(SECRET, token, now)
    assert e.value.reason == reason and e.value.message == f"{reason} token"
    return e.value


def test_a_good_token_grants_its_symbols_and_subject():
    token = auth.mint(SECRET, 60, now=NOW, symbols=["AAPL", "MSFT"], subject="alice")
    grant = auth.verify(SECRET, token, NOW + 30)
    assert grant == auth.Grant(frozenset({"AAPL", "MSFT"}), "alice")
    assert grant.allows("AAPL") and not grant.allows("NVDA")


def test_a_token_without_symbols_grants_every_symbol():
    grant = auth.verify(SECRET, auth.mint(SECRET, 60, now=NOW), NOW)
    assert grant.symbols is None and grant.allows("ANYTHING")


def test_a_token_made_by_another_jwt_library_call_is_accepted():
    token = jwt.encode({"exp": int(NOW) + 60, "symbols": ["NVDA"]}, SECRET, algorithm="HS256")
    assert auth.verify(SECRET, token, NOW).symbols == {"NVDA"}


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_missing(token):
    refused_as("missing", token)


def test_a_token_past_its_expiry_and_the_leeway_is_expired():
    token = auth.mint(SECRET, 60, now=NOW)
    auth.verify(SECRET, token, NOW + 60 + auth.LEEWAY_S - 1)  # clock skew forgiven
    refused_as("expired", token, NOW + 60 + auth.LEEWAY_S)


def test_a_tampered_payload_is_invalid():
    token = auth.mint(SECRET, 60, now=NOW, symbols=["AAPL"])
    refused_as("invalid", with_payload(token, {"exp": int(NOW) + 60, "symbols": ["NVDA"]}))


def test_a_tampered_signature_is_invalid():
    header, payload, signature = auth.mint(SECRET, 60, now=NOW).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    refused_as("invalid", f"{header}.{payload}.{flipped}")


def test_a_token_signed_with_another_secret_is_invalid():
    refused_as("invalid", auth.mint(OTHER_SECRET, 60, now=NOW))


def test_an_unsigned_alg_none_token_is_invalid():
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"exp": int(NOW) + 60}).encode())
    refused_as("invalid", f"{header}.{payload}.")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_another_hmac_algorithm_is_invalid():
    refused_as("invalid", jwt.encode({"exp": int(NOW) + 60}, SECRET, algorithm="HS512"))


@pytest.mark.parametrize("claims", [
    {},  # no exp
    {"exp": None},
    {"exp": "soon"},
    {"exp": True},
    {"exp": float("inf")},
    {"exp": int(NOW) + 60, "nbf": int(NOW) + 60},  # not valid yet
    {"exp": int(NOW) + 60, "sub": 42},
])
def test_a_token_without_a_usable_time_or_subject_is_invalid(claims):
    refused_as("invalid", jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("symbols", ["AAPL", {"AAPL": 1}, [1, 2], ["AAPL", None], None])
def test_a_symbols_claim_that_is_not_a_list_of_names_is_invalid(symbols):
    token = jwt.encode({"exp": int(NOW) + 60, "symbols": symbols}, SECRET, algorithm="HS256")
    refused_as("invalid", token)


def test_garbage_is_invalid_and_the_refusal_is_always_the_same_words():
    rng = random.Random(5)
    good = auth.mint(SECRET, 60, now=NOW)
    alphabet = "abcXYZ019-_.=+/ {}\"%\x00é"
    for _ in range(300):
        cut = rng.randrange(len(good))
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        candidate = rng.choice([junk, good[:cut] + junk, good + junk, "a.b.c", "..", "."])
        assert str(refused_as("invalid", candidate)) == "invalid token"  # never PyJWT's


def test_scope_keeps_what_was_asked_within_the_grant():
    grant = auth.Grant(frozenset({"AAPL", "NVDA", "NOT-ON-THIS-FEED"}))
    asked = TABLE.resolve(["NVDA"])
    assert auth.scope(grant, TABLE, asked) is asked
    assert auth.scope(grant, TABLE, None).tolist() == [0, 2]  # the token's symbols
    assert auth.scope(auth.EVERYONE, TABLE, None) is None  # everything
    assert auth.scope(auth.EVERYONE, TABLE, asked) is asked


def test_scope_refuses_a_symbol_the_grant_does_not_allow_and_names_it():
    grant = auth.Grant(frozenset({"AAPL"}))
    with pytest.raises(SymbolNotAllowed) as e:
        auth.scope(grant, TABLE, np.array([0, 1], np.int32))
    assert e.value.code == "forbidden" and e.value.message == "symbol not allowed: 'MSFT'"


@pytest.mark.parametrize("authorization, query, found", [
    ("Bearer abc", None, "abc"),
    ("bearer   abc ", None, "abc"),
    ("Bearer abc", "xyz", "abc"),  # the header wins
    ("Basic dXNlcjpwdw==", "xyz", "xyz"),  # another scheme is not ours
    ("Bearer ", "xyz", "xyz"),
    (None, "xyz", "xyz"),
    (None, None, None),
])
def test_the_bearer_header_wins_over_the_query(authorization, query, found):
    assert auth.bearer(authorization, query) == found


@pytest.mark.parametrize("values, found", [
    ([], None),
    ([b""], ""),  # missing, as verify says
    ([b"first", b" last\t"], "last"),  # the last one, stripped, as with every parameter
])
def test_the_query_token_is_the_last_one_stripped(values, found):
    assert auth.query_token(values) == found


def test_a_query_token_that_is_not_utf8_is_invalid_not_a_bad_request():
    """Tornado's own reading refused it with a 400 and logged its first 40 bytes."""
    token = auth.mint(SECRET, 60, now=NOW)
    for raw in (token.encode() + b"\xff", b"\x80", b"\xc3"):
        found = auth.query_token([raw])
        assert found is not None
        refused_as("invalid", found)


def test_challenges_follow_rfc_6750():
    assert auth.challenge(Unauthorized("missing")) == "Bearer"
    assert auth.challenge(Unauthorized("expired")) == (
        'Bearer error="invalid_token", error_description="expired token"')
    assert auth.challenge(SymbolNotAllowed("x")) == 'Bearer error="insufficient_scope"'


def test_the_secret_comes_from_the_flag_then_the_environment():
    env = {auth.SECRET_ENV: "e" * 32}
    assert auth.secret_from("f" * 32, env) == b"f" * 32
    assert auth.secret_from(None, env) == b"e" * 32
    assert auth.secret_from(None, {}) is None  # auth off


@pytest.mark.parametrize("flag, env, named", [
    ("short-secret", {}, "the secret"),
    (None, {auth.SECRET_ENV: ""}, auth.SECRET_ENV),  # set but empty is a mistake, not "off"
    (None, {auth.SECRET_ENV: "x" * 31}, auth.SECRET_ENV),
    ('{"kty": "oct", "k": "' + "a" * 40 + '"}', {}, "the secret"),
])
def test_an_unusable_secret_is_a_config_error_that_never_quotes_it(flag, env, named):
    with pytest.raises(ConfigError) as e:
        auth.secret_from(flag, env)
    message = str(e.value)
    assert message.startswith("argument --auth-token-secret: " + named)
    assert "secrets.token_urlsafe(32)" in message
    for secret in (flag, *env.values()):
        assert not secret or secret not in message


def test_the_config_never_shows_the_secret():
    assert "sss" not in repr(Config(auth_token_secret=SECRET))
