"""What RFC 7519 (and dashboard.core.auth's documentation of it) says the server must make
of a token, written apart from the server's code so the fuzzer can judge it: tokens signed
here, and the verdict each deserves."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import math
from typing import Any

from dashboard.core import auth

SECRET = b"fuzz-token-secret-" + b"k" * 32
HS256 = {"alg": "HS256", "typ": "JWT"}


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signed(claims: object, header: object = HS256, secret: bytes = SECRET) -> bytes:
    """A JWS compact serialization (RFC 7515 §3.1) signed with HMAC-SHA256 here, not by
    PyJWT, which refuses to encode some of the claims drawn below."""
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    return signing_input + b"." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the server must make of a token: refused for one of ``reasons``, or granting
    ``symbols`` (None: every one)."""

    reasons: frozenset[str] = frozenset()
    symbols: frozenset[str] | None = None

    def allows(self, name: str) -> bool:
        return not self.reasons and (self.symbols is None or name in self.symbols)


MISSING, INVALID, EXPIRED = (Verdict(frozenset({r})) for r in ("missing", "invalid", "expired"))


@dataclasses.dataclass(frozen=True)
class Credential:
    """A token as sent, and what it is when it arrives as it was sent."""

    text: bytes
    verdict: Verdict = INVALID


def is_time(value: object) -> bool:
    """A NumericDate (RFC 7519 §2): a finite JSON number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def judged(claims: dict[str, Any], now: float) -> Verdict:
    """RFC 7519 as dashboard.core.auth documents it: ``exp`` required and ``nbf`` optional,
    NumericDates, neither past its time beyond the leeway; ``sub`` a string (§4.1.2);
    ``symbols`` a list of names. A token breaking several rules may be refused for any."""
    exp, nbf, names = claims.get("exp"), claims.get("nbf", 0), claims.get("symbols", [])
    invalid = (
        not (is_time(exp) and is_time(nbf)) or nbf > now + auth.LEEWAY_S
        or not isinstance(claims.get("sub", ""), str)
        or not (isinstance(names, list) and all(isinstance(n, str) for n in names))
    )
    expired = is_time(exp) and exp <= now - auth.LEEWAY_S
    reasons = {"invalid"} if invalid else set()
    if expired:
        reasons.add("expired")
    if reasons:
        return Verdict(frozenset(reasons))
    return Verdict(symbols=frozenset(names) if "symbols" in claims else None)
