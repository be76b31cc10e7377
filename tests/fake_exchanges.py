"""Fake Binance spot and Coinbase Exchange market-data WebSocket servers, on loopback.

They speak the public formats of ``shared/EXCHANGES.md`` and run in the current asyncio loop
(``gen_test``), so real adapters can be tested against them::

    fake = FakeBinance(frames=load_frames("binance_frames.jsonl"))
    await fake.start()                  # fake.url == "ws://127.0.0.1:PORT"
    await fake.wait_connections(1)
    fake.drop()                         # abort every connection, no close frame
    await fake.stop()

The frame files in ``tests/data`` were generated once (deterministically) and are data, not
code: ``expected_binance_last`` / ``expected_coinbase_last`` derive the final state from them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from typing import Any

import tornado.websocket

from tests.fake_exchange_base import FakeExchange, Frame, Handler, load_frames, now_ms

#: Trades missing from ``coinbase_frames.jsonl``: ETH-USD's ``trade_id`` jumps by 3 once.
COINBASE_GAP_TRADES = 2

__all__ = ["COINBASE_GAP_TRADES", "FakeBinance", "FakeCoinbase", "expected_binance_last",
           "expected_coinbase_last", "load_frames"]


def expected_binance_last() -> dict[str, dict[str, float]]:
    """Per symbol: the last trade price, the bid/ask of the last book ticker at or before that
    trade, and the volume (the sum of every trade's ``q``, in file order)."""
    out: dict[str, dict[str, float]] = {}
    book: dict[str, tuple[float, float]] = {}
    for frame in load_frames("binance_frames.jsonl"):
        data = frame["data"]
        sym = data["s"]
        if data.get("e") == "trade":
            price = float(data["p"])
            bid, ask = book.get(sym, (price, price))
            volume = out.get(sym, {}).get("volume", 0.0) + float(data["q"])
            out[sym] = {"price": price, "bid": bid, "ask": ask, "volume": volume}
        else:
            book[sym] = (float(data["b"]), float(data["a"]))
    return out


def expected_coinbase_last() -> dict[str, dict[str, float]]:
    """Per product: the last match's price, the sum of match sizes (file order) as volume, and
    bid/ask from the last ticker."""
    out: dict[str, dict[str, float]] = {}
    for m in load_frames("coinbase_frames.jsonl"):
        product = m.get("product_id")
        if m["type"] in ("match", "last_match"):
            row = out.setdefault(product, {"volume": 0.0})
            row["price"] = float(m["price"])
            row["volume"] += float(m["size"])
        elif m["type"] == "ticker":
            row = out.setdefault(product, {"volume": 0.0})
            row["bid"], row["ask"] = float(m["best_bid"]), float(m["best_ask"])
    return {p: {k: row[k] for k in ("price", "bid", "ask", "volume")} for p, row in out.items()}


# -- Common server machinery ----------------------------------------------------------------


_BINANCE_STREAM = re.compile(r"[a-z0-9]+@(trade|bookTicker)")
BINANCE_MAX_STREAMS = 1024


class _BinanceHandler(Handler):
    """``/stream?streams=a/b`` (combined: frames wrapped) or ``/ws/<stream>`` (raw)."""

    fake: FakeBinance

    async def get(self, *args: Any, **kwargs: Any) -> None:
        combined = self.request.path.rstrip("/") == "/stream"
        if combined:
            text = self.get_query_argument("streams", "", strip=False)
        else:
            text = args[0] if args and args[0] else ""
        names = [s for s in text.split("/") if s] if combined else ([text] if text else [])
        error = _binance_invalid(names)
        if error is not None:
            self.set_status(400)
            self.finish({"code": 2, "msg": f"Invalid request: {error}"})
            return
        self.combined = combined
        self.streams: list[str] = list(names)
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.fake.requests.append(list(self.streams))
        self.accepted()
        fake = self.fake
        self.spawn(self.replay(fake.frames, fake.frame_interval_s))
        if fake.ping_interval_s:
            self.spawn(self._pinger(fake.ping_interval_s))

    def outgoing(self, frame: Frame) -> Any | None:
        if frame.get("stream") not in self.streams:
            return None
        return frame if self.combined else frame["data"]

    def wrap(self, stream: str, data: Frame) -> Frame:
        return {"stream": stream, "data": data} if self.combined else data

    async def _pinger(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            payload = str(now_ms()).encode()
            try:
                self.ping(payload)
            except tornado.websocket.WebSocketClosedError:
                return
            self.fake.pings.append(payload)

    def on_pong(self, data: bytes) -> None:
        self.fake.pongs.append(data)

    def on_message(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except ValueError:
            self.send({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
            return
        if not isinstance(request, dict):
            self.send({"error": {"code": 2, "msg": "Invalid request"}, "id": None})
            return
        method, params, rid = request.get("method"), request.get("params", []), request.get("id")
        if method == "LIST_SUBSCRIPTIONS":
            self.send({"result": list(self.streams), "id": rid})
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            self.send({"error": {"code": 2, "msg": "Invalid request"}, "id": rid})
            return
        error = _binance_invalid(params, already=len(self.streams) if method == "SUBSCRIBE" else 0)
        if error is not None:
            self.send({"error": {"code": 2, "msg": f"Invalid request: {error}"}, "id": rid})
            return
        if method == "SUBSCRIBE":
            self.fake.subscribes.append(request)
            self.streams += [s for s in params if s not in self.streams]
        else:
            self.streams = [s for s in self.streams if s not in params]
        self.send({"result": None, "id": rid})


def _binance_invalid(names: list[Any], already: int = 0) -> str | None:
    """Why Binance would refuse these stream names, or None."""
    for name in names:
        if not isinstance(name, str) or not _BINANCE_STREAM.fullmatch(name):
            return f"invalid stream name {str(name)[:60]!r}"
    if already + len(names) > BINANCE_MAX_STREAMS:
        return f"more than {BINANCE_MAX_STREAMS} streams"
    return None


class FakeBinance(FakeExchange):
    """Binance spot market streams.

    ``requests``: each connection's stream names (list of lists). ``subscribes``: live
    SUBSCRIBE messages. ``pings`` / ``pongs``: ping payloads sent / pong payloads received.
    Frames are replayed per connection, filtered by its streams (live subscriptions
    included from then on), ``frame_interval_s`` apart.
    """

    def __init__(
        self,
        frames: Iterable[Frame] = (),
        frame_interval_s: float = 0.01,
        ping_interval_s: float | None = None,
    ) -> None:
        super().__init__(frames, frame_interval_s)
        self.ping_interval_s = ping_interval_s
        self.requests: list[list[str]] = []
        self.subscribes: list[dict[str, Any]] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []

    def routes(self) -> list[tuple[str, type[Handler]]]:
        return [(r"/stream/?", _BinanceHandler), (r"/ws/?([^/]*)", _BinanceHandler)]

    def server_shutdown(self) -> None:
        """Send the ``serverShutdown`` event to every open connection, leaving it open."""
        data = {"e": "serverShutdown", "E": now_ms()}
        for h in list(self._open):
            assert isinstance(h, _BinanceHandler)
            h.send(h.wrap("!serverShutdown", data))


# -- Coinbase -------------------------------------------------------------------------------

#: The channel each replayed message type belongs to.
COINBASE_CHANNEL_OF = {
    "ticker": "ticker", "match": "matches", "last_match": "matches", "heartbeat": "heartbeat",
}
_COINBASE_CHANNELS = frozenset(COINBASE_CHANNEL_OF.values())


class _CoinbaseHandler(Handler):
    """The feed at ``/``: subscribe within ``subscribe_timeout_s`` or be disconnected."""

    fake: FakeCoinbase

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.subs: dict[str, list[str]] = {}
        self.accepted()  # its request is recorded when the subscribe arrives
        self._replaying = False
        self._timer = asyncio.get_running_loop().call_later(
            self.fake.subscribe_timeout_s, self._subscribe_timeout
        )

    def _subscribe_timeout(self) -> None:
        self.send({"type": "error", "message": "Failed to subscribe"})
        self.close()

    def on_close(self) -> None:
        self._timer.cancel()
        super().on_close()

    def on_message(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            kind = request["type"]
            if kind not in ("subscribe", "unsubscribe"):
                raise ValueError(f"unknown type {kind!r:.40}")
            wanted = _coinbase_channels(request)
        except (ValueError, KeyError, TypeError) as e:
            self.send({"type": "error", "message": "Failed to subscribe", "reason": str(e)})
            return
        if kind == "subscribe":
            self.fake.requests.append(request)
            for name, products in wanted.items():
                have = self.subs.setdefault(name, [])
                have += [p for p in products if p not in have]
            self._timer.cancel()
        else:
            for name, products in wanted.items():
                left = [p for p in self.subs.get(name, []) if p not in products]
                if left:
                    self.subs[name] = left
                else:
                    self.subs.pop(name, None)
        self.send({
            "type": "subscriptions",
            "channels": [{"name": n, "product_ids": list(p)} for n, p in self.subs.items()],
        })
        if kind == "subscribe" and not self._replaying:
            self._replaying = True
            self.spawn(self.replay(self.fake.frames, self.fake.frame_interval_s))

    def outgoing(self, frame: Frame) -> Any | None:
        channel = COINBASE_CHANNEL_OF.get(frame.get("type", ""))
        if channel is None or frame.get("product_id") not in self.subs.get(channel, ()):
            return None
        return frame


def _coinbase_channels(request: dict[str, Any]) -> dict[str, list[str]]:
    """``{channel: product_ids}`` of a (un)subscribe; channels are names or objects
    ``{"name": ..., "product_ids": [...]}`` (top-level ``product_ids`` otherwise)."""
    default = request.get("product_ids", [])
    out: dict[str, list[str]] = {}
    for ch in request["channels"]:
        name, products = (ch, default) if isinstance(ch, str) else (
            ch["name"], ch.get("product_ids", default))
        if name not in _COINBASE_CHANNELS:
            raise ValueError(f"{name!r:.40} is not a valid channel")
        if not products or not all(isinstance(p, str) for p in products):
            raise ValueError(f"no valid product_ids for {name!r:.40}")
        out.setdefault(name, [])
        out[name] += [p for p in products if p not in out[name]]
    if not out:
        raise ValueError("no channels")
    return out


class FakeCoinbase(FakeExchange):
    """Coinbase Exchange feed (``ticker``, ``matches``, ``heartbeat`` channels).

    ``requests``: each valid subscribe message as received (dicts). After the first one a
    connection gets ``subscriptions`` and the replay of the frames whose channel and
    ``product_id`` it subscribed to, ``frame_interval_s`` apart.
    """

    def __init__(
        self,
        frames: Iterable[Frame] = (),
        frame_interval_s: float = 0.01,
        subscribe_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(frames, frame_interval_s)
        self.subscribe_timeout_s = subscribe_timeout_s
        self.requests: list[dict[str, Any]] = []

    def routes(self) -> list[tuple[str, type[Handler]]]:
        return [(r"/", _CoinbaseHandler)]
