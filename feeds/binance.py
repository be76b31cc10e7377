"""Binance spot: the combined stream of ``<symbol>@trade`` and ``<symbol>@bookTicker``.

From Binance's ``web-socket-streams.md`` (see ``shared/EXCHANGES.md``):

- Combined streams are at ``/stream?streams=<a>/<b>``, every frame wrapped as
  ``{"stream":"<name>","data":{...}}``; stream names are lowercase.
- "The WebSocket server will send a ping frame every 20 seconds"; the client must answer
  with a pong copying the payload — Tornado's client does so as it reads.
- "A single connection to stream.binance.com is only valid for 24 hours": we reconnect
  before (23.5 h). A ``serverShutdown`` event also means: reconnect.
- "A single connection can listen to a maximum of 1024 streams": two streams per symbol, so
  symbols are split over connections of at most 512 symbols.
- Trade: ``p`` price, ``q`` quantity, ``T`` trade time (ms). Book ticker: ``b`` best bid,
  ``a`` best ask, no timestamp (the receive time is used).
"""

from __future__ import annotations

import time
from typing import Any

from feeds.base import FeedSpec
from feeds.rows import decimal
from feeds.websocket_feed import Action, Keepalive, ParseError, WebSocketFeed

MAX_STREAMS_PER_CONNECTION = 1024
STREAMS_PER_SYMBOL = 2
CONNECTION_LIFETIME_S = 23.5 * 3600


class BinanceFeed(WebSocketFeed):
    name = "binance"
    default_url = "wss://stream.binance.com:9443"

    def __init__(self, names: tuple[str, ...], url: str, keepalive: Keepalive) -> None:
        super().__init__([n.upper() for n in names], url, keepalive)
        self._last_price: dict[int, float] = {}
        self._book: dict[int, tuple[float, float]] = {}

    @classmethod
    def create(cls, spec: FeedSpec) -> BinanceFeed:
        keepalive = Keepalive.from_spec(
            spec, stale_s=10.0, watchdog_s=60.0, max_connection_s=CONNECTION_LIFETIME_S
        )
        return cls(spec.names(cls.name), spec.url or cls.default_url, keepalive)

    def shards(self) -> list[str]:
        per = MAX_STREAMS_PER_CONNECTION // STREAMS_PER_SYMBOL
        urls = []
        for start in range(0, len(self.symbols), per):
            streams = [
                f"{s.lower()}@{kind}"
                for s in self.symbols[start:start + per] for kind in ("trade", "bookTicker")
            ]
            urls.append(f"{self.url}/stream?streams={'/'.join(streams)}")
        return urls

    def on_message(self, message: Any, shard: int) -> Action | None:
        if not isinstance(message, dict):
            raise ParseError("a frame must be a JSON object")
        data = message.get("data", message)  # combined streams wrap; raw ones do not
        if not isinstance(data, dict):
            raise ParseError("data must be a JSON object")
        if data.get("e") == "serverShutdown":
            return Action.RECONNECT
        if "result" in data and "id" in data:
            return None  # the answer to a SUBSCRIBE
        sym = self.index.get(data["s"])
        if sym is None:
            raise ParseError(f"a symbol we did not subscribe to: {data['s']!r:.40}")
        if data.get("e") == "trade":
            price = decimal(data["p"])
            bid, ask = self._book.get(sym, (price, price))
            self._last_price[sym] = price
            self.rows.add(sym, price, decimal(data["q"]), bid, ask, float(data["T"]))
        elif "b" in data and "a" in data:
            bid, ask = decimal(data["b"]), decimal(data["a"])
            self._book[sym] = (bid, ask)
            if sym in self._last_price:
                self.rows.quote(sym, self._last_price[sym], bid, ask, time.time() * 1000)
        else:
            raise ParseError("neither a trade nor a book ticker")
        return None
