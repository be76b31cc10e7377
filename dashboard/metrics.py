"""Prometheus metrics, on a registry of the server's own (several servers can share a process
in tests without their counters mixing)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dashboard.core.overload import Overload
from dashboard.gc_watch import PauseTimer
from dashboard.scaleout.health import BrokerHealth, BrokerState
from feeds.base import FeedHealth, FeedState

# ``*_created`` series double the exposition and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

TRANSPORTS = ("ws", "sse", "stream")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        #: What each transport's clients were sent, counted where it is written.
        self.sent = {t: Tally() for t in TRANSPORTS}
        r.register(_SentCollector(self.sent))
        self.ticks_in = Counter("dashboard_ticks_in", "Ticks received from feeds.", registry=r)
        self.batches = Counter("dashboard_batches", "Batches made by the batcher.", registry=r)
        self.slow_consumers_dropped = Counter(
            "dashboard_slow_consumers_dropped",
            "Clients closed because they stayed stuck past the slow-client timeout.",
            ["transport"], registry=r,
        )
        self.slow_client_steps = Counter(
            "dashboard_slow_client_steps",
            "Steps of the slow-client ladder: behind (socket full, conflating), caught_up "
            "(drained, sent one fresh frame), dropped (stuck past the timeout).",
            ["transport", "step"], registry=r,
        )
        self.conflated_ticks = Counter(
            "dashboard_conflated_ticks",
            "Ticks merged away by conflation (max_hz, bytes-per-second caps, slow clients).",
            ["transport"], registry=r,
        )
        self.dead_peers = Counter(
            "dashboard_dead_peers",
            "Connections aborted because the peer stopped answering pings.",
            ["transport"], registry=r,
        )
        self.rate_limit_rejections = Counter(
            "dashboard_rate_limit_rejections",
            "Client messages or connections refused by a rate or connection limit.",
            ["reason"], registry=r,
        )
        self.auth_rejections = Counter(
            "dashboard_auth_rejections",
            "Requests and client messages refused by auth: a missing, expired or invalid "
            "token, or a symbol the token does not allow (forbidden).",
            ["reason"], registry=r,
        )
        self.overload_conflated_ticks = Counter(
            "dashboard_overload_conflated_ticks",
            "Ticks merged away because the server was overloaded (each batch conflated to "
            "the latest tick per symbol before its fan-out).", registry=r,
        )
        self.heads_refused = Counter(
            "dashboard_http_heads_refused",
            "Connections refused for their request head: too_large (answered 431), timeout "
            "(no complete head within the head timeout of connecting) or proxy_protocol (a "
            "trusted proxy's connection without a valid PROXY header).", ["reason"], registry=r,
        )
        for reason in ("too_large", "timeout", "proxy_protocol"):  # every series, from 0
            self.heads_refused.labels(reason)
        self.client_errors = Counter(
            "dashboard_client_errors", "Bad client requests and messages answered with an error.",
            ["code"], registry=r,
        )
        for t in TRANSPORTS:
            self.slow_consumers_dropped.labels(t)
            self.conflated_ticks.labels(t)
            self.dead_peers.labels(t)
            for step in ("behind", "caught_up", "dropped"):
                self.slow_client_steps.labels(t, step)
        for reason in ("client_msgs", "max_connections", "max_connections_per_ip", "overloaded"):
            self.rate_limit_rejections.labels(reason)
        for reason in ("missing", "expired", "invalid", "forbidden"):
            self.auth_rejections.labels(reason)

        #: Times the collector (installed by the server while it runs).
        self.gc = PauseTimer(Histogram(
            "dashboard_gc_pause_seconds",
            "CPU time of each garbage collection, by generation (2: a full one).",
            ["generation"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        ))
        Gauge(
            "dashboard_gc_frozen_objects",
            "Objects start-up built, frozen out of every garbage collection's walk.",
            registry=r,
        ).set_function(gc.get_freeze_count)

    def watch_connections(self, count: Callable[[], Mapping[str, int]]) -> None:
        """``count``: open connections by transport, counted when scraped (a labelled
        gauge moved on each connect costs a fair part of a handshake's CPU, measured)."""
        self.registry.register(_ConnectionsCollector(count))

    def watch_outstanding(self, total: Callable[[], float]) -> None:
        Gauge(
            "dashboard_outstanding_bytes",
            "Bytes handed to client sockets that the kernel has not taken yet (upper bound).",
            registry=self.registry,
        ).set_function(total)

    def watch_overload(self, overload: Overload) -> None:
        self.registry.register(_OverloadCollector(overload))

    def watch_feed(self, name: str, health: FeedHealth) -> None:
        self.registry.register(_FeedCollector(name, health))

    def watch_broker(self, health: BrokerHealth) -> None:
        self.registry.register(_BrokerCollector(health))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Tally:
    """Frames and bytes written to one transport's clients. Plain integers, bumped once per
    write by every client of every fan-out (a Prometheus counter takes a lock each time),
    and read at scrape time."""

    __slots__ = ("bytes", "frames")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def add(self, nbytes: int, frames: int = 1) -> None:
        """``frames`` frames of ``nbytes`` each."""
        self.frames += frames
        self.bytes += nbytes * frames


class _SentCollector(Collector):
    def __init__(self, sent: dict[str, Tally]) -> None:
        self.sent = sent

    def collect(self) -> Iterable[Metric]:
        frames = CounterMetricFamily(
            "dashboard_frames_sent", "Messages written to clients, keepalives included.",
            labels=["transport"],
        )
        nbytes = CounterMetricFamily(
            "dashboard_bytes_sent", "Bytes written to clients (after compression).",
            labels=["transport"],
        )
        for transport, tally in self.sent.items():
            frames.add_metric([transport], tally.frames)
            nbytes.add_metric([transport], tally.bytes)
        yield frames
        yield nbytes


class _ConnectionsCollector(Collector):
    def __init__(self, count: Callable[[], Mapping[str, int]]) -> None:
        self.count = count

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "dashboard_connections", "Open client connections.", labels=["transport"]
        )
        open_now = self.count()
        for transport in TRANSPORTS:
            family.add_metric([transport], open_now.get(transport, 0))
        yield family


class _OverloadCollector(Collector):
    def __init__(self, overload: Overload) -> None:
        self.overload = overload

    def collect(self) -> Iterable[Metric]:
        o = self.overload
        yield GaugeMetricFamily(
            "dashboard_overloaded", "1 while fan-outs outlast the batch interval: new streams "
            "refused, the interval stretched.",
            value=1.0 if o.overloaded else 0.0,
        )
        yield GaugeMetricFamily(
            "dashboard_overload_conflating", "1 while fan-outs are too long for even the "
            "longest stretch of the interval: each batch is conflated to the latest tick per "
            "symbol.",
            value=1.0 if o.conflating else 0.0,
        )
        yield CounterMetricFamily(
            "dashboard_overload_trips", "Times the server became overloaded.", value=o.trips
        )
        yield GaugeMetricFamily(
            "dashboard_fanout_seconds", "CPU time the last batch's fan-out took (full garbage "
            "collections left out).",
            value=o.last_s,
        )


class _FeedCollector(Collector):
    """A feed's own counters, read at scrape time (the feed keeps plain integers)."""

    def __init__(self, name: str, health: FeedHealth) -> None:
        self.name = name
        self.health = health

    def collect(self) -> Iterable[Metric]:
        h = self.health
        for metric, help_text, value in (
            ("messages", "Messages received from the feed's source.", h.messages),
            ("reconnects", "Times the feed reconnected to its source.", h.reconnects),
            ("gaps", "Messages the source sent that the feed missed (sequence gaps).", h.gaps),
            ("parse_errors", "Malformed messages counted and skipped.", h.parse_errors),
        ):
            family = CounterMetricFamily(f"dashboard_feed_{metric}", help_text, labels=["feed"])
            family.add_metric([self.name], value)
            yield family
        state = GaugeMetricFamily(
            "dashboard_feed_state", "1 for the feed's current state.", labels=["feed", "state"]
        )
        for s in FeedState:
            state.add_metric([self.name, s.value], 1.0 if h.state is s else 0.0)
        yield state


class _BrokerCollector(Collector):
    """The Redis broker's connection, read at scrape time."""

    def __init__(self, health: BrokerHealth) -> None:
        self.health = health

    def collect(self) -> Iterable[Metric]:
        h = self.health
        yield GaugeMetricFamily(
            "dashboard_broker_connected", "1 while the broker (Redis) answers.",
            value=1.0 if h.state is BrokerState.CONNECTED else 0.0,
        )
        yield CounterMetricFamily(
            "dashboard_broker_reconnects", "Times the broker came back after an outage.",
            value=h.reconnects,
        )
        yield CounterMetricFamily(
            "dashboard_broker_resets",
            "Times the broker's stream jumped (entries lost) and clients got a reset snapshot.",
            value=h.resets,
        )
