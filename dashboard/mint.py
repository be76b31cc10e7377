"""``market-dashboard-token`` (or ``python -m dashboard.mint``): mint a token for a server
started with ``--auth-token-secret``; the token alone on stdout, so a script can take it.

A bad flag or a missing secret is one line on stderr naming the flag, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence

from dashboard import __version__
from dashboard.argtypes import OneLineParser, symbol_names
from dashboard.core import auth
from dashboard.errors import ConfigError

PROG = "market-dashboard-token"
UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
#: A token lives at most a year: past that, rotate the secret instead.
MAX_TTL_S = 366 * 86_400
MAX_SUBJECT = 256
#: A token travels in a request line or header, and the server takes at most 16 KiB of those.
MAX_TOKEN_BYTES = 8 * 1024


def _ttl(raw: str) -> float:
    """Seconds, or a number with a unit: ``90``, ``15m``, ``2h``, ``7d``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", raw.strip())
    seconds = float(match[1]) * UNITS_S[match[2]] if match else 0.0
    if not 1 <= seconds <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(
            f"expected seconds from 1 to {MAX_TTL_S} or a duration like 15m, 2h, 7d, "
            f"got {raw!r}")
    return seconds


def _subject(raw: str) -> str:
    if not raw.strip() or len(raw) > MAX_SUBJECT:
        raise argparse.ArgumentTypeError(f"expected a name of 1 to {MAX_SUBJECT} characters")
    return raw


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Mint a signed, expiring token for a "
                                             "market-dashboard server started with auth on.")
    a = p.add_argument
    a("--version", action="version", version=f"{PROG} {__version__}")
    a("--ttl", type=_ttl, default=3600.0,
      help="how long the token is good for: seconds, or 15m, 2h, 7d (default 3600)")
    a("--symbols", type=symbol_names,
      help="the only symbols the token may subscribe to: AAPL,MSFT (default: every symbol)")
    a("--subject", type=_subject, help="whom the token is for (its sub claim)")
    a("--auth-token-secret", metavar="SECRET",
      help=f"the server's secret; default: ${auth.SECRET_ENV}, which keeps it out of ps")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    p = parser()
    ns = p.parse_args(argv)
    try:
        secret = auth.secret_from(ns.auth_token_secret, os.environ)
    except ConfigError as e:
        p.error(str(e))
    if secret is None:
        p.error(f"argument {auth.SECRET_FLAG}: the server's secret is needed, from the flag "
                f"or ${auth.SECRET_ENV}")
    token = auth.mint(secret, ns.ttl, now=time.time(), symbols=ns.symbols, subject=ns.subject)
    if len(token) > MAX_TOKEN_BYTES:
        p.error(f"argument --symbols: too many for one token (over {MAX_TOKEN_BYTES} bytes)")
    sys.stdout.write(token + "\n")


if __name__ == "__main__":
    main()
