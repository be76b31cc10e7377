"""Argument parsing shared by the command lines: one-line errors and checked numbers."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn

SYMBOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/^=-]{0,31}")


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line on stderr naming it, exit status 2 (no usage dump): the line
    is what a person or a supervisor's log needs to fix the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def number(kind: Callable[[str], float], low: float, high: float = math.inf,
           low_inclusive: bool = True) -> Callable[[str], float]:
    """A finite number within bounds, as an argparse ``type``."""
    def parse(raw: str) -> float:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
        ok_low = value >= low if low_inclusive else value > low
        if not (math.isfinite(value) and ok_low and value <= high):
            bound = f">= {low:g}" if low_inclusive else f"> {low:g}"
            top = f" and <= {high:g}" if high != math.inf else ""
            raise argparse.ArgumentTypeError(f"must be {bound}{top}, got {raw!r}")
        return value
    return parse


def symbol_names(raw: str) -> tuple[str, ...]:
    """Symbol names, ``AAPL,MSFT``: each a plausible name, none twice."""
    names = tuple(s.strip() for s in raw.split(","))
    bad = [s for s in names if not SYMBOL_NAME.fullmatch(s)]
    if bad:
        raise argparse.ArgumentTypeError(f"not a symbol name: {bad[0]!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a symbol is listed twice")
    return names
