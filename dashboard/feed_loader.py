"""Building the feed a configuration names."""

from __future__ import annotations

from dashboard.config import Config
from dashboard.errors import ConfigError
from feeds.base import Feed
from feeds.simulator import SimulatorFeed

FEEDS = ("sim",)


def build_feed(config: Config) -> Feed:
    if config.feed == "sim":
        return SimulatorFeed.from_symbols(config.symbols, config.tick_rate, config.seed)
    raise ConfigError("--feed", f"unknown feed {config.feed!r}; feeds: {', '.join(FEEDS)}")
