"""Signed, expiring access tokens: standard JWTs (RFC 7519) signed with HS256, so a user's
own backend can mint them with any JWT library.

Pure functions, no I/O, the clock passed in. PyJWT checks the signature and the algorithm
(HS256 only: no ``alg: none``, no RS/HS confusion) and that ``exp`` is present; the times are
compared here, against ``now``.

Claims:

- ``exp`` (required): expiry, seconds since the epoch. "The processing of the 'exp' claim
  requires that the current date/time MUST be before the expiration date/time" (RFC 7519
  §4.1.4), give or take :data:`LEEWAY_S` of clock skew.
- ``nbf`` (optional): not before, with the same leeway.
- ``sub`` (optional): whom the token was minted for; a string.
- ``symbols`` (optional): the symbol names the token may subscribe to; absent, every symbol.

A refusal says only ``missing token``, ``expired token`` or ``invalid token``: never the
secret, and never PyJWT's own message, which may quote the token.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from dashboard.core.symbols import MAX_LISTED, IndexArray, SymbolTable, listed
from dashboard.errors import ConfigError, SymbolNotAllowed, Unauthorized

ALGORITHM = "HS256"
#: Clock skew between the minting backend and this server.
LEEWAY_S = 5.0
#: RFC 7518 §3.2: "A key of the same size as the hash output (for instance, 256 bits for
#: 'HS256') or larger MUST be used with this algorithm."
MIN_SECRET_BYTES = 32
SECRET_FLAG = "--auth-token-secret"
SECRET_ENV = "DASHBOARD_AUTH_TOKEN_SECRET"
MAKE_A_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows."""

    #: The symbol names it may subscribe to; None: every symbol.
    symbols: frozenset[str] | None = None
    subject: str | None = None

    def allows(self, name: str) -> bool:
        return self.symbols is None or name in self.symbols


#: Everything, as when auth is off.
EVERYONE = Grant()


def mint(
    secret: bytes, ttl_s: float, *, now: float, symbols: Sequence[str] | None = None,
    subject: str | None = None,
) -> str:
    """A token good for ``ttl_s`` seconds from ``now``, as any JWT library would make it."""
    claims: dict[str, Any] = {"iat": int(now), "exp": int(now + ttl_s)}
    if subject is not None:
        claims["sub"] = subject
    if symbols is not None:
        claims["symbols"] = list(symbols)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: bytes, token: str | None, now: float) -> Grant:
    """The grant of a valid token; raises :class:`Unauthorized` (missing, expired, invalid)."""
    if not token:
        raise Unauthorized("missing")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={
            "require": ["exp"], "verify_exp": False, "verify_nbf": False, "verify_iat": False,
        })
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid") from None
    exp, nbf = claims["exp"], claims.get("nbf", 0)
    if not (_is_time(exp) and _is_time(nbf)) or nbf > now + LEEWAY_S:
        raise Unauthorized("invalid")
    if exp <= now - LEEWAY_S:
        raise Unauthorized("expired")
    return Grant(_symbols(claims), claims.get("sub"))


def _is_time(value: object) -> bool:
    """A NumericDate (RFC 7519 §2); not NaN or infinity, which Python's JSON parser takes."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _symbols(claims: dict[str, Any]) -> frozenset[str] | None:
    if "symbols" not in claims:
        return None
    names = claims["symbols"]
    if not (isinstance(names, list) and len(names) <= MAX_LISTED
            and all(isinstance(n, str) for n in names)):
        raise Unauthorized("invalid")
    return frozenset(names)


def scope(grant: Grant, table: SymbolTable, indices: IndexArray | None) -> IndexArray | None:
    """What a client that asked for ``indices`` (None: everything) may have: what it asked
    for, or with no list the token's symbols that the feed has; a symbol the token does not
    allow raises :class:`SymbolNotAllowed`."""
    if grant.symbols is None:
        return indices
    if indices is None:
        return table.known(grant.symbols)
    refused = [name for name in table.array[indices].tolist() if not grant.allows(name)]
    if refused:
        raise SymbolNotAllowed(f"symbol not allowed: {listed(refused)}")
    return indices


def query_token(values: Sequence[bytes]) -> str | None:
    """The token of a request's ``token=`` query parameters as sent: the last one, as with
    every parameter, outer whitespace stripped. Taken from the raw values, not from Tornado's
    ``get_argument``, which refuses one that is not UTF-8 with a 400 and logs its first 40
    bytes; such a value is no JWT (RFC 7515 §7.1: base64url text), so it is kept with
    replacement characters, for :func:`verify` to refuse as ``invalid``."""
    if not values:
        return None
    return values[-1].decode("utf-8", "replace").strip()


def bearer(authorization: str | None, query_token: str | None) -> str | None:
    """The token of a request: an ``Authorization: Bearer`` header wins over a ``token=``
    query parameter (which ``EventSource`` and browser WebSockets need: they cannot send
    headers). RFC 6750 §2.1: ``credentials = "Bearer" 1*SP b64token``; the scheme is
    case-insensitive (RFC 9110 §11.1)."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query_token


def challenge(error: Unauthorized | SymbolNotAllowed) -> str:
    """The ``WWW-Authenticate`` value of a refusal. RFC 6750 §3.1: a request without a token
    gets no error code; a bad token ``invalid_token``; a symbol the token does not cover
    ``insufficient_scope``."""
    if isinstance(error, SymbolNotAllowed):
        return 'Bearer error="insufficient_scope"'
    if error.reason == "missing":
        return "Bearer"
    return f'Bearer error="invalid_token", error_description="{error.message}"'


def secret_from(flag_value: str | None, environ: Mapping[str, str]) -> bytes | None:
    """The HMAC secret from the flag, else from the environment (out of ``ps``); None: auth
    off. A set but unusable secret (an empty variable too) raises :class:`ConfigError`,
    which never quotes it."""
    source = "the secret" if flag_value is not None else SECRET_ENV
    raw = flag_value if flag_value is not None else environ.get(SECRET_ENV)
    if raw is None:
        return None
    secret = os.fsencode(raw)  # the bytes as given, even if not UTF-8
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(SECRET_FLAG, f"{source} must be at least {MIN_SECRET_BYTES} bytes; "
                                       f"make one with: {MAKE_A_SECRET}")
    try:
        jwt.encode({}, secret, algorithm=ALGORITHM)
    except jwt.InvalidKeyError:  # PyJWT refuses secrets shaped like PEM or JWK keys
        raise ConfigError(SECRET_FLAG, f"{source} looks like a PEM or JWK key, not an HMAC "
                                       f"secret; make one with: {MAKE_A_SECRET}") from None
    return secret
