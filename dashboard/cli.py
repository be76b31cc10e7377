"""``market-dashboard``: flags → :class:`Config` → a running server until SIGINT/SIGTERM.

A bad flag or value is one line on stderr naming the flag, exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence

from dashboard import __version__, tasks
from dashboard.argtypes import OneLineParser, number, symbol_names
from dashboard.config import Config
from dashboard.core import auth
from dashboard.core.client_address import Network, networks
from dashboard.errors import ConfigError, DashboardError
from dashboard.gc_watch import freeze_startup
from dashboard.server import Server
from dashboard.tasks import first
from dashboard.workers import die_with_parent, supervise
from feeds.base import FeedError

PROG = "market-dashboard"
MAX_SYMBOLS = 100_000


def _port(raw: str) -> int:
    if not raw.isdigit() or int(raw) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {raw!r}")
    return int(raw)


def _count(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {raw!r}")
    return int(raw)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip())
    bad = [o for o in origins if not re.fullmatch(r"https?://[^\s/?#]+", o)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected origins like https://app.example, "
                                         f"got {bad[0]!r}")
    return origins


def _networks(raw: str) -> tuple[Network, ...]:
    try:
        return networks(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _option(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {raw!r}")
    return key.strip(), value


def _ws_url(raw: str) -> str:
    if not re.fullmatch(r"wss?://[^\s/?#]+(/[^\s]*)?", raw):
        raise argparse.ArgumentTypeError(f"expected a ws:// or wss:// URL, got {raw!r}")
    return raw


def _broker(raw: str) -> str:
    if raw == "memory":
        return raw
    if not re.fullmatch(r"(rediss?|unix)://\S+", raw):
        # The value is not echoed: it may hold a password.
        raise argparse.ArgumentTypeError("expected memory or redis://HOST:PORT/DB")
    if importlib.util.find_spec("redis") is None:
        raise argparse.ArgumentTypeError(
            "a Redis broker needs the redis package: pip install 'market-dashboard[redis]'"
        )
    return raw


def _symbols(raw: str) -> int | tuple[str, ...]:
    """A count (``100``) or names (``AAPL,MSFT``)."""
    if raw.isdigit():
        n = int(raw)
        if not 1 <= n <= MAX_SYMBOLS:
            raise argparse.ArgumentTypeError(f"count must be 1-{MAX_SYMBOLS}, got {raw!r}")
        return n
    return symbol_names(raw)


def parser() -> argparse.ArgumentParser:
    d = Config()
    p = OneLineParser(prog=PROG, description="Live market-data dashboard server.")
    a = p.add_argument
    a("--version", action="version", version=f"{PROG} {__version__}")
    a("--host", default=d.host, help="address to listen on (default %(default)s)")
    a("--port", type=_port, default=d.port, help="port; 0 picks a free one (default %(default)s)")
    a("--feed", default=d.feed,
      help="feed: sim (the simulator, default), binance, coinbase, replay, an installed "
           "plug-in, or package.module:ClassName")
    a("--feed-url", default=d.feed_url, type=_ws_url,
      help="replaces the exchange's WebSocket base URL")
    a("--feed-option", action="append", default=[], type=_option, metavar="KEY=VALUE",
      help="an option for the feed (repeatable), e.g. path=ticks.jsonl speed=10")
    a("--record", default=d.record_path, metavar="FILE",
      help="write every tick of the feed to FILE (JSON lines) for --feed replay")
    a("--symbols", type=_symbols, default=d.symbols,
      help="simulated symbol count, or names: AAPL,MSFT (default %(default)s)")
    a("--tick-rate", type=number(float, 0, 1e6, False), default=d.tick_rate,
      help="simulated ticks per second over all symbols (default %(default)g)")
    a("--seed", type=_count, default=d.seed, help="makes simulated prices repeatable")
    a("--batch-ms", type=number(float, 1, 10_000), default=d.batch_ms,
      help="coalescing interval in ms (default %(default)g)")
    a("--history-s", type=number(float, 0, 86_400), default=d.history_s,
      help="seconds of batches held for resume (default %(default)g)")
    a("--ping-interval", type=number(float, 0, 3600), default=d.ping_interval_s,
      help="seconds between WebSocket pings; 0 turns them off (default %(default)g)")
    a("--ping-timeout", type=number(float, 0, 3600), default=d.ping_timeout_s,
      help="seconds a pong may take before the peer is dropped (default %(default)g)")
    a("--max-hz", type=number(float, 0, 1000), default=d.max_hz,
      help="most frames a second per connection (caps a client's max_hz); 0: no cap")
    a("--max-bytes-per-s", type=number(float, 0), default=d.max_bytes_per_s,
      help="most bytes a second per connection, the rest conflated; 0: no cap "
           "(default %(default)g)")
    a("--slow-client-timeout", type=number(float, 0, 3600, False),
      default=d.slow_client_timeout_s,
      help="seconds a client's socket may stay full before it is dropped (default %(default)g)")
    a("--max-client-msgs-per-s", type=number(float, 0, 10_000, False),
      default=d.max_client_msgs_per_s,
      help="client messages a second per connection, burst twice that (default %(default)g)")
    a("--max-connections", type=_count, default=d.max_connections,
      help="streaming connections in total; 0: no cap (default %(default)s)")
    a("--max-connections-per-ip", type=_count, default=d.max_connections_per_ip,
      help="streaming connections per client address; 0: no cap (default %(default)s)")
    a("--allowed-origins", type=_origins, default=d.allowed_origins, metavar="ORIGINS",
      help="other sites' pages allowed to stream from here: https://a.example,https://b.example")
    a("--trusted-proxies", type=_networks, default=d.trusted_proxies, metavar="CIDRS",
      help="proxies (load balancers) whose X-Forwarded-For or Forwarded header names the "
           "client, for the per-address cap and the logs: 127.0.0.1/32,10.0.0.0/8")
    a("--proxy-protocol", action="store_true",
      help="connections from --trusted-proxies start with a PROXY protocol header (v1 or "
           "v2: HAProxy's send-proxy), which names the client")
    a("--auth-token-secret", metavar="SECRET",
      help=f"turn auth on: streams and the API then need a token signed with SECRET (at "
           f"least {auth.MIN_SECRET_BYTES} bytes; mint one with market-dashboard-token). "
           f"Default: ${auth.SECRET_ENV}, which keeps the secret out of ps")
    a("--certfile", default=d.certfile, help="serve https/wss with this certificate chain")
    a("--keyfile", default=d.keyfile, help="the private key of --certfile")
    a("--broker", type=_broker, default=d.broker,
      help="memory (one process, default) or redis://HOST:PORT/DB to scale out over Redis")
    a("--role", choices=["all", "feed", "edge"], default=d.role,
      help="all: run the feed and serve clients (default); feed: publish batches to the "
           "broker; edge: serve clients from the broker")
    a("--workers", type=number(int, 1, 256), default=d.workers,
      help="edge processes sharing --port, fed by one feed process through a Redis broker "
           "(default %(default)s)")
    a("--reuse-port", action="store_true",
      help="listen with SO_REUSEPORT so several edge processes can share --port")
    a("--log-level", default="info", choices=["debug", "info", "warning", "error"],
      help="(default %(default)s)")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[Config, str]:
    p = parser()
    ns = p.parse_args(argv)
    if bool(ns.certfile) != bool(ns.keyfile):
        p.error(f"argument {'--keyfile' if ns.certfile else '--certfile'}: "
                "--certfile and --keyfile go together")
    if ns.role != "all" and ns.broker == "memory":
        p.error(f"argument --role: --role {ns.role} needs --broker redis://HOST:PORT/DB")
    if ns.workers > 1 and ns.broker == "memory":
        p.error("argument --workers: more than one worker needs --broker redis://HOST:PORT/DB")
    if ns.workers > 1 and ns.role == "feed":
        p.error("argument --workers: workers are edges; a --role feed process runs alone")
    try:
        secret = auth.secret_from(ns.auth_token_secret, os.environ)
    except ConfigError as e:
        p.error(str(e))
    if ns.proxy_protocol and not ns.trusted_proxies:
        p.error("argument --proxy-protocol: needs --trusted-proxies, the proxies that may name a "
                "client")
    config = Config(
        host=ns.host, port=ns.port, feed=ns.feed, feed_url=ns.feed_url,
        feed_options=tuple(ns.feed_option), record_path=ns.record,
        symbols=ns.symbols, tick_rate=ns.tick_rate,
        seed=ns.seed, batch_ms=ns.batch_ms, history_s=ns.history_s,
        ping_interval_s=ns.ping_interval, ping_timeout_s=ns.ping_timeout,
        max_hz=ns.max_hz, max_bytes_per_s=ns.max_bytes_per_s,
        slow_client_timeout_s=ns.slow_client_timeout,
        max_client_msgs_per_s=ns.max_client_msgs_per_s,
        max_connections=ns.max_connections, max_connections_per_ip=ns.max_connections_per_ip,
        allowed_origins=ns.allowed_origins, trusted_proxies=ns.trusted_proxies,
        proxy_protocol=ns.proxy_protocol,
        auth_token_secret=secret,
        certfile=ns.certfile, keyfile=ns.keyfile,
        broker=ns.broker, role=ns.role, workers=ns.workers, reuse_port=ns.reuse_port,
    )
    return config, ns.log_level


async def run(server: Server) -> int:
    """Until SIGINT/SIGTERM (also while still starting: an edge may wait for Redis or for a
    feed process) or an error no retry mends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not await first(server.start(), stop.wait()):
            await server.stop()
            return 0
    except (DashboardError, FeedError, OSError) as e:
        await server.stop()
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(f"listening on {server.url}", flush=True)
    await first(stop.wait(), server.failed.wait())
    logging.getLogger(__name__).info("shutting down")
    await server.stop()
    if server.failure is not None:
        print(f"{PROG}: error: {server.failure}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    die_with_parent()
    args = list(sys.argv[1:] if argv is None else argv)
    config, level = config_from_args(args)
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if config.workers > 1:
        sys.exit(tasks.run(supervise(config, args)))
    try:
        server = Server(config)
    except (DashboardError, FeedError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
    # What is loaded by now lives as long as the process: no collection walks it again.
    # Before the server starts, so that no connection (a cycle once it closes) is frozen.
    freeze_startup()
    sys.exit(tasks.run(run(server)))
