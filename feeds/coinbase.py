"""Coinbase Exchange: trades from ``matches``, best bid/ask from ``ticker``, ``heartbeat``.

From the Coinbase Exchange WebSocket feed docs (see ``shared/EXCHANGES.md``):

- Send a ``subscribe`` within 5 s of connecting or be disconnected.
- The ``ticker`` channel "batches updates in case of cascading matches": its ``sequence``
  and ``trade_id`` jump legitimately and say nothing about loss. Loss shows on ``matches``,
  where ``trade_id`` grows by exactly 1 per product per trade, and in a heartbeat's
  ``last_trade_id`` running ahead of the last match seen. Those are counted as gaps.

So trades (``price``, ``size``, ``time``) come from ``match`` messages, and ``best_bid`` /
``best_ask`` from ``ticker`` — not ``price``/``last_size`` of the ticker, which would count
batched trades as one, or twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
import tornado.websocket

from feeds.base import FeedSpec
from feeds.rows import decimal
from feeds.websocket_feed import Action, Keepalive, ParseError, WebSocketFeed

log = logging.getLogger(__name__)

CHANNELS = ("matches", "ticker", "heartbeat")


def epoch_ms(iso: str) -> float:
    """``2021-04-17T16:43:30.244075Z`` as epoch milliseconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000.0


class CoinbaseFeed(WebSocketFeed):
    name = "coinbase"
    default_url = "wss://ws-feed.exchange.coinbase.com"

    def __init__(self, names: tuple[str, ...], url: str, keepalive: Keepalive) -> None:
        super().__init__(names, url, keepalive)
        self._last_trade_id: dict[int, int] = {}
        self._last_price: dict[int, float] = {}
        self._book: dict[int, tuple[float, float]] = {}

    @classmethod
    def create(cls, spec: FeedSpec) -> CoinbaseFeed:
        # Heartbeats come every second per product: silence is noticed fast.
        keepalive = Keepalive.from_spec(spec, stale_s=5.0, watchdog_s=15.0)
        return cls(spec.names(cls.name), spec.url or cls.default_url, keepalive)

    def shards(self) -> list[str]:
        return [self.url]

    async def on_open(self, conn: tornado.websocket.WebSocketClientConnection, shard: int) -> None:
        await conn.write_message(orjson.dumps({
            "type": "subscribe", "product_ids": list(self.symbols), "channels": list(CHANNELS),
        }).decode())

    def on_message(self, message: Any, shard: int) -> Action | None:
        if not isinstance(message, dict):
            raise ParseError("a frame must be a JSON object")
        kind = message.get("type")
        if kind in ("subscriptions", None):
            return None
        if kind == "error":
            log.warning("coinbase: error: %.200s", message.get("message"))
            return None
        sym = self.index.get(message["product_id"])
        if sym is None:
            raise ParseError(f"a product we did not subscribe to: {message['product_id']!r:.40}")
        if kind in ("match", "last_match"):
            self._match(sym, message)
        elif kind == "ticker":
            bid, ask = decimal(message["best_bid"]), decimal(message["best_ask"])
            self._book[sym] = (bid, ask)
            price = self._last_price.get(sym)
            if price is not None:  # a quote row needs a last trade price
                self.rows.quote(sym, price, bid, ask, epoch_ms(message["time"]))
        elif kind == "heartbeat":
            self._advance(sym, int(message["last_trade_id"]), "heartbeat")
        else:
            raise ParseError(f"unexpected message type {kind!r:.40}")
        return None

    def _match(self, sym: int, m: dict[str, Any]) -> None:
        trade_id = int(m["trade_id"])
        last = self._last_trade_id.get(sym)
        if last is not None and trade_id <= last:
            return  # seen already (a last_match after a reconnect)
        price, size, ts = decimal(m["price"]), decimal(m["size"]), epoch_ms(m["time"])
        self._advance(sym, trade_id - 1, "match")
        self._last_trade_id[sym] = trade_id
        self._last_price[sym] = price
        bid, ask = self._book.get(sym, (price, price))
        self.rows.add(sym, price, size, bid, ask, ts)

    def _advance(self, sym: int, trade_id: int, seen_in: str) -> None:
        """Trades up to ``trade_id`` exist; those after the last one seen were lost."""
        last = self._last_trade_id.get(sym)
        if last is None:
            if seen_in == "heartbeat":
                self._last_trade_id[sym] = trade_id
            return
        if trade_id > last:
            missed = trade_id - last
            self.health.gaps += missed
            log.warning("coinbase: %s missed %d trade(s) after trade_id %d (seen in %s)",
                        self.symbols[sym], missed, last, seen_in)
            self._last_trade_id[sym] = trade_id
