"""Instruments the simulator ticks: real liquid US names first, made-up ones after.

Real tickers with plausible prices make the dashboard look like a market rather than noise;
made-up names (``SIM0121``) and unknown explicit names get prices that are deterministic —
derived from their index or their name, never from Python's per-process ``hash`` — so two
runs of the server show the same universe.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Range of made-up starting prices (drawn log-uniformly, so $5 and $500 are equally common).
MIN_PRICE = 5.0
MAX_PRICE = 500.0
#: Range of made-up annualised volatilities.
MIN_VOL = 0.15
MAX_VOL = 0.60

#: (ticker, starting price, annualised volatility); most recognisable first, because
#: ``default_instruments(n)`` takes a prefix.
REAL_INSTRUMENTS: tuple[tuple[str, float, float], ...] = (
    ("SPY", 502.01, 0.15), ("QQQ", 436.24, 0.20), ("AAPL", 189.12, 0.25),
    ("MSFT", 411.50, 0.24), ("NVDA", 726.13, 0.50), ("AMZN", 174.45, 0.32),
    ("GOOGL", 143.96, 0.30), ("META", 468.03, 0.38), ("TSLA", 193.76, 0.50),
    ("AVGO", 1238.50, 0.35), ("JPM", 174.20, 0.20), ("V", 277.30, 0.18), ("IWM", 199.50, 0.22),
    ("DIA", 388.90, 0.14), ("UNH", 521.40, 0.22), ("XOM", 103.90, 0.25), ("JNJ", 158.60, 0.15),
    ("MA", 465.10, 0.19), ("PG", 158.40, 0.14), ("HD", 362.80, 0.21), ("COST", 718.20, 0.20),
    ("LLY", 764.90, 0.32), ("ABBV", 176.80, 0.22), ("MRK", 127.50, 0.20), ("CVX", 151.10, 0.24),
    ("PEP", 168.30, 0.15), ("KO", 60.12, 0.13), ("ADBE", 561.20, 0.33), ("CRM", 288.70, 0.32),
    ("NFLX", 583.00, 0.38), ("AMD", 176.52, 0.50), ("INTC", 43.10, 0.38), ("CSCO", 49.80, 0.20),
    ("ORCL", 113.40, 0.28), ("WMT", 170.50, 0.16), ("BAC", 33.90, 0.26), ("WFC", 49.30, 0.26),
    ("C", 55.40, 0.28), ("GS", 385.20, 0.24), ("MS", 86.40, 0.25), ("DIS", 111.20, 0.28),
    ("NKE", 104.60, 0.27), ("MCD", 294.30, 0.16), ("SBUX", 92.80, 0.25), ("T", 17.02, 0.22),
    ("VZ", 40.30, 0.20), ("TMUS", 162.10, 0.18), ("CMCSA", 41.90, 0.24), ("PFE", 27.70, 0.24),
    ("BMY", 49.20, 0.22), ("AMGN", 289.40, 0.22), ("GILD", 73.10, 0.22), ("TXN", 164.30, 0.26),
    ("QCOM", 157.60, 0.33), ("AMAT", 190.20, 0.38), ("MU", 86.80, 0.42), ("LRCX", 880.40, 0.40),
    ("KLAC", 650.10, 0.36), ("ASML", 879.30, 0.34), ("TSM", 137.70, 0.32),
    ("IBM", 186.30, 0.20), ("NOW", 775.50, 0.33), ("INTU", 650.70, 0.30), ("UBER", 78.30, 0.40),
    ("ABNB", 148.60, 0.42), ("SHOP", 79.70, 0.55), ("PYPL", 59.80, 0.35), ("PLTR", 24.90, 0.60),
    ("SNOW", 205.60, 0.55), ("COIN", 168.90, 0.85), ("BA", 205.90, 0.30), ("CAT", 318.90, 0.27),
    ("DE", 364.50, 0.24), ("GE", 156.20, 0.28), ("HON", 199.10, 0.18), ("UPS", 147.40, 0.24),
    ("LMT", 430.20, 0.18), ("RTX", 91.10, 0.22), ("UNP", 249.00, 0.20), ("F", 12.21, 0.35),
    ("GM", 38.60, 0.33), ("RIVN", 11.20, 0.75), ("LCID", 3.12, 0.80), ("BABA", 75.40, 0.38),
    ("PDD", 128.70, 0.50), ("DAL", 41.90, 0.32), ("UAL", 43.20, 0.40), ("MAR", 246.20, 0.23),
    ("BKNG", 3498.00, 0.25), ("SPGI", 433.10, 0.20), ("BLK", 812.60, 0.20),
    ("SCHW", 64.30, 0.30), ("AXP", 213.70, 0.23), ("COP", 112.40, 0.26), ("SLB", 49.50, 0.30),
    ("OXY", 58.70, 0.28), ("NEE", 57.80, 0.25), ("LOW", 231.90, 0.22), ("TGT", 151.40, 0.30),
    ("CVS", 74.30, 0.27), ("ISRG", 386.80, 0.28), ("TMO", 566.30, 0.22), ("ABT", 113.60, 0.18),
    ("ROKU", 63.50, 0.60), ("SNAP", 11.10, 0.65), ("SPOT", 258.90, 0.38), ("MRNA", 98.10, 0.50),
    ("GLD", 188.60, 0.13), ("SLV", 21.70, 0.25), ("TLT", 93.40, 0.15), ("EEM", 39.80, 0.17),
    ("XLF", 39.60, 0.17), ("XLE", 86.50, 0.24), ("XLK", 204.20, 0.21), ("SMH", 203.40, 0.35),
    ("ARKK", 49.70, 0.48), ("TQQQ", 57.90, 0.60), ("SOFI", 7.85, 0.60), ("GME", 14.70, 0.90),
    ("NKLA", 0.7912, 0.95),
)

_KNOWN: dict[str, tuple[float, float]] = {
    name: (price, vol) for name, price, vol in REAL_INSTRUMENTS
}


def tick_size_for(price: float) -> float:
    """The US equity minimum increment: a cent, or a hundredth of a cent below $1 (Reg NMS)."""
    return 0.0001 if price < 1.0 else 0.01


def _decimals(tick_size: float) -> int:
    """Fewest decimals that write ``tick_size`` exactly, so rounded prices print short."""
    for d in range(13):
        if abs(round(tick_size, d) - tick_size) < 1e-12:
            return d
    return 12


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tickable name and the parameters of its random walk."""

    name: str
    #: Starting price, on the tick grid.
    price: float
    tick_size: float
    #: Annualised volatility of log returns (0.15 = 15 %/year).
    annual_vol: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("instrument name must not be empty")
        if not (math.isfinite(self.price) and self.price > 0):
            raise ValueError(f"{self.name}: price must be positive, not {self.price!r}")
        if not (math.isfinite(self.tick_size) and self.tick_size > 0):
            raise ValueError(f"{self.name}: tick_size must be positive, not {self.tick_size!r}")
        if not (math.isfinite(self.annual_vol) and self.annual_vol >= 0):
            raise ValueError(f"{self.name}: annual_vol must be >= 0, not {self.annual_vol!r}")

    @property
    def decimals(self) -> int:
        """Decimals of the tick grid (2 for cents)."""
        return _decimals(self.tick_size)

    @classmethod
    def at(cls, name: str, price: float, annual_vol: float) -> Instrument:
        """An instrument with the standard tick size, its price snapped to that grid."""
        tick = tick_size_for(price)
        return cls(name, round(price, _decimals(tick)), tick, annual_vol)


def _made_up(name: str, rng: np.random.Generator) -> Instrument:
    """A plausible instrument: log-uniform price in [MIN_PRICE, MAX_PRICE], moderate vol."""
    price = math.exp(rng.uniform(math.log(MIN_PRICE), math.log(MAX_PRICE)))
    vol = float(rng.uniform(MIN_VOL, MAX_VOL))
    return Instrument.at(name, price, round(vol, 3))


def default_instruments(n: int) -> list[Instrument]:
    """The first ``n`` real instruments, then ``SIM0121``-style names seeded by their index.

    Seeding by index (not by one shared stream) keeps ``SIM0500`` the same whatever ``n`` is.
    """
    if n < 1:
        raise ValueError(f"need at least one symbol, not {n}")
    out = [Instrument.at(name, price, vol) for name, price, vol in REAL_INSTRUMENTS[:n]]
    for i in range(len(out), n):
        out.append(_made_up(f"SIM{i + 1:04d}", np.random.default_rng(i)))
    return out


def instruments_for(names: Sequence[str], seed: int | None = None) -> list[Instrument]:
    """Instruments for explicitly named symbols, in the given order.

    A known ticker (case-insensitive) starts at its real price; any other name gets a price
    derived from ``zlib.crc32`` of the name — stable across processes, unlike ``hash`` — mixed
    with ``seed`` when one is given, so a seed can reshuffle the made-up names' prices.
    Names are kept exactly as given because clients subscribe by them.
    """
    if isinstance(names, str):
        raise TypeError("names must be a sequence of names, not one string")
    if not names:
        raise ValueError("need at least one symbol")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    seen: set[str] = set()
    out: list[Instrument] = []
    for name in names:
        if not name or name != name.strip():
            raise ValueError(f"bad symbol name {name!r}")
        if name in seen:
            raise ValueError(f"symbol {name!r} listed twice")
        seen.add(name)
        known = _KNOWN.get(name.upper())
        if known is not None:
            out.append(Instrument.at(name, *known))
            continue
        key = [zlib.crc32(name.encode("utf-8"))]
        if seed is not None:
            key.append(seed)
        out.append(_made_up(name, np.random.default_rng(key)))
    return out
