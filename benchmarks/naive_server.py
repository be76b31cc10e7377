"""The naive baseline: a Tornado server that sends each tick as its own JSON message to
every client with ``write_message(dict)`` — encoded again for every client, one frame per
tick, no batching. Same simulator, same message shape, so the load test measures it alike.

    python -m benchmarks.naive_server --port 0 [--symbols 100] [--tick-rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from feeds.simulator import SimulatorFeed

clients: set[NaiveSocket] = set()


class NaiveSocket(tornado.websocket.WebSocketHandler):
    def open(self) -> None:
        clients.add(self)

    def on_close(self) -> None:
        clients.discard(self)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--tick-rate", type=float, default=2000.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-level", default="warning")  # accepted, like the real server
    a = p.parse_args()
    feed = SimulatorFeed.from_symbols(a.symbols, a.tick_rate, seed=a.seed)
    names = list(feed.symbols)
    app = tornado.web.Application([(r"/ws", NaiveSocket)], websocket_ping_interval=0)
    sockets = tornado.netutil.bind_sockets(a.port, "127.0.0.1")
    tornado.httpserver.HTTPServer(app).add_sockets(sockets)
    print(f"listening on http://127.0.0.1:{sockets[0].getsockname()[1]}", flush=True)
    seq = 0
    async for ticks in feed:
        for i in range(len(ticks)):
            seq += 1
            message = {"type": "batch", "seq": seq, "ts": float(ticks.ts[i]), "ticks": {
                "sym": [names[ticks.sym[i]]], "price": [float(ticks.price[i])],
                "size": [float(ticks.size[i])], "bid": [float(ticks.bid[i])],
                "ask": [float(ticks.ask[i])], "ts": [float(ticks.ts[i])],
            }}
            for client in list(clients):
                try:
                    client.write_message(message)
                except tornado.websocket.WebSocketClosedError:
                    clients.discard(client)


if __name__ == "__main__":
    asyncio.run(main())
