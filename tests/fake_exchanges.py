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
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
from tornado.iostream import IOStream

DATA_DIR = Path(__file__).parent / "data"

#: Trades missing from ``coinbase_frames.jsonl``: ETH-USD's ``trade_id`` jumps by 3 once.
COINBASE_GAP_TRADES = 2

Frame = dict[str, Any]


def load_frames(name: str) -> list[Frame]:
    """The frames of ``tests/data/<name>``, one JSON object per line."""
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


def _now_ms() -> int:
    return int(time.time() * 1000)


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


class _Handler(tornado.websocket.WebSocketHandler):
    """One accepted connection of a fake: registers itself and owns its background tasks."""

    fake: _FakeExchange

    def initialize(self, fake: _FakeExchange) -> None:
        self.fake = fake
        self._tasks: set[asyncio.Future[None]] = set()
        self._stream: IOStream | None = None

    def check_origin(self, origin: str) -> bool:
        return True

    def accepted(self) -> None:
        """Count this connection as accepted and open (call from ``open``)."""
        assert self.ws_connection is not None
        self._stream = self.ws_connection.stream
        self.fake._accept(self)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, message: Any) -> None:
        """Send a JSON (or raw text) frame now; ignored if the connection is gone."""
        text = message if isinstance(message, str) else _dumps(message)
        try:
            sent = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            return
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())  # closed meanwhile: fine

    async def replay(self, frames: Iterable[Frame], interval: float) -> None:
        """Send the frames this connection wants (:meth:`outgoing`), ``interval`` apart."""
        try:
            for frame in frames:
                message = self.outgoing(frame)
                if message is None:
                    continue
                await self.write_message(_dumps(message))
                await asyncio.sleep(interval)
        except tornado.websocket.WebSocketClosedError:
            pass

    def outgoing(self, frame: Frame) -> Any | None:
        """What to send for ``frame``, or None to skip it."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close the TCP stream at once: the peer sees EOF without a close frame."""
        if self._stream is not None:
            self._stream.close()

    def on_close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.fake._open.discard(self)


class _FakeExchange:
    """The shared part of both fakes: start/stop, connection counting, drop and raw sends."""

    def __init__(self, frames: Iterable[Frame] = (), frame_interval_s: float = 0.01) -> None:
        self.frames: list[Frame] = list(frames)
        self.frame_interval_s = frame_interval_s
        self.port = 0
        self.url = ""
        #: Connections accepted so far (WebSocket handshakes that succeeded).
        self.connections = 0
        #: What each accepted connection asked for, in order of acceptance.
        self.requests: list[Any] = []
        self._open: set[_Handler] = set()
        self._accepted = asyncio.Event()
        self._server: tornado.httpserver.HTTPServer | None = None

    def routes(self) -> list[tuple[str, type[_Handler]]]:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port, in the running loop."""
        app = tornado.web.Application(
            [(path, handler, {"fake": self}) for path, handler in self.routes()]
        )
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)

    async def stop(self) -> None:
        """Stop listening, close open connections (aborting those that do not answer within a
        second). Safe to call twice."""
        if self._server is None:
            return
        self._server.stop()
        for h in list(self._open):
            h.close(1001, "going away")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while self._open and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.drop()
        await self._server.close_all_connections()
        self._server = None

    async def wait_connections(self, n: int, timeout: float = 5.0) -> None:
        """Until ``n`` connections have been accepted in total; TimeoutError after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while self.connections < n:
                    self._accepted.clear()
                    await self._accepted.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.connections} of {n} connections after {timeout} s"
            ) from None

    def drop(self) -> None:
        """Abort every open connection: TCP stream closed, no WebSocket close frame."""
        handlers, self._open = list(self._open), set()
        for h in handlers:
            h.abort()

    def send_raw(self, text: str) -> None:
        """Send ``text`` as a text frame, unchanged, to every open connection."""
        for h in list(self._open):
            h.send(text)

    def _accept(self, handler: _Handler) -> None:
        self.connections += 1
        self._open.add(handler)
        self._accepted.set()


# -- Binance --------------------------------------------------------------------------------

_BINANCE_STREAM = re.compile(r"[a-z0-9]+@(trade|bookTicker)")
BINANCE_MAX_STREAMS = 1024


class _BinanceHandler(_Handler):
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
            payload = str(_now_ms()).encode()
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


class FakeBinance(_FakeExchange):
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

    def routes(self) -> list[tuple[str, type[_Handler]]]:
        return [(r"/stream/?", _BinanceHandler), (r"/ws/?([^/]*)", _BinanceHandler)]

    def server_shutdown(self) -> None:
        """Send the ``serverShutdown`` event to every open connection, leaving it open."""
        data = {"e": "serverShutdown", "E": _now_ms()}
        for h in list(self._open):
            assert isinstance(h, _BinanceHandler)
            h.send(h.wrap("!serverShutdown", data))


# -- Coinbase -------------------------------------------------------------------------------

#: The channel each replayed message type belongs to.
COINBASE_CHANNEL_OF = {
    "ticker": "ticker", "match": "matches", "last_match": "matches", "heartbeat": "heartbeat",
}
_COINBASE_CHANNELS = frozenset(COINBASE_CHANNEL_OF.values())


class _CoinbaseHandler(_Handler):
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


class FakeCoinbase(_FakeExchange):
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

    def routes(self) -> list[tuple[str, type[_Handler]]]:
        return [(r"/", _CoinbaseHandler)]
