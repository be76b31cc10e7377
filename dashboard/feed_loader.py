"""Finding and building the feed ``--feed`` names: a built-in, an installed plug-in (the
``dashboard.feeds`` entry-point group), or ``package.module:ClassName``."""

from __future__ import annotations

import importlib
import importlib.metadata

from dashboard.config import Config
from dashboard.errors import ConfigError
from feeds.base import Feed, FeedSpec

BUILTIN = {
    "sim": "feeds.simulator:SimulatorFeed",
    "binance": "feeds.binance:BinanceFeed",
    "coinbase": "feeds.coinbase:CoinbaseFeed",
    "replay": "feeds.replay:ReplayFeed",
}
ENTRY_POINT_GROUP = "dashboard.feeds"


def plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load(target: str, name: str) -> type[Feed]:
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError("--feed", f"cannot load {name!r} ({target}): {e}") from None
    if not (isinstance(obj, type) and issubclass(obj, Feed)):
        raise ConfigError("--feed", f"{target} is not a feeds.base.Feed subclass")
    return obj


def feed_class(name: str) -> type[Feed]:
    if name in BUILTIN:
        return _load(BUILTIN[name], name)
    found = plugins()
    if name in found:
        return _load(found[name].value, name)
    if ":" in name:
        return _load(name, name)
    known = ", ".join([*BUILTIN, *sorted(found)])
    raise ConfigError(
        "--feed", f"unknown feed {name!r}; feeds: {known}, or package.module:ClassName"
    )


def build_feed(config: Config) -> Feed:
    """Raises ConfigError (unknown feed) or FeedError (a feed that refuses its options)."""
    spec = FeedSpec(
        symbols=config.symbols, url=config.feed_url, options=dict(config.feed_options),
        tick_rate=config.tick_rate, seed=config.seed,
    )
    return feed_class(config.feed).create(spec)
