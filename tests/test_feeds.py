"""Feeds without exchanges: decimal parsing, row buffering, record and replay, plug-ins."""

from __future__ import annotations

import asyncio
import random
import urllib.request
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from dashboard.errors import ConfigError
from dashboard.feed_loader import feed_class
from feeds.base import Feed, FeedSpec, Ticks
from feeds.record import read_chunks
from feeds.replay import ReplayFeed
from feeds.rows import RowBuffer, decimal
from feeds.simulator import SimulatorFeed
from tests.clients import WSClient, metric
from tests.process import DashboardProcess

ROOT = Path(__file__).resolve().parent.parent


def test_decimal_strings_come_back_out_as_the_same_digits():
    rng = random.Random(5)
    for _ in range(20_000):
        digits = rng.randint(0, 8)
        text = f"{rng.randint(0, 10**7)}.{rng.randint(0, 10**digits - 1):0{digits}d}" \
            if digits else str(rng.randint(0, 10**9))
        out = orjson.dumps(decimal(text)).decode()
        assert Decimal(out) == Decimal(text), (text, out)
    with pytest.raises(ValueError):
        decimal("NaN")


def test_quote_only_updates_are_coalesced_to_the_latest_per_symbol():
    rows = RowBuffer()
    rows.add(0, 10.0, 1.0, 9.9, 10.1, 1.0)
    for i in range(100):
        rows.quote(1, 20.0, 19.0 + i / 100, 21.0, 2.0 + i)
    ticks = rows.take()
    assert ticks.sym.tolist() == [0, 1]
    assert ticks.size.tolist() == [1.0, 0.0]
    assert ticks.bid.tolist() == [9.9, 19.99]
    assert len(rows.take()) == 0


@pytest.mark.gen_test(timeout=30)
async def test_record_then_replay_reproduces_the_same_ticks(start_server, tmp_path):
    path = tmp_path / "ticks.jsonl"
    server = await start_server(symbols=5, tick_rate=3000.0, seed=11, record_path=str(path))
    while metric(server.state.metrics.exposition().decode(), "dashboard_ticks_in_total") < 1500:
        await asyncio.sleep(0.02)
    await server.stop()
    recorded = list(read_chunks(path))
    total = sum(len(t) for _, t in recorded)
    assert total >= 1500
    # The recording holds exactly what the seeded simulator made ...
    _, made = SimulatorFeed.from_symbols(5, 3000.0, seed=11).generate(total)
    # ... and replaying it, ten times faster, yields the same ticks.
    replay = ReplayFeed.create(FeedSpec(options={"path": str(path), "speed": "10"}))
    assert tuple(replay.symbols) == tuple(SimulatorFeed.from_symbols(5, 1.0).symbols)
    played = [t async for t in replay.ticks()]
    for column in ("sym", "price", "size", "bid", "ask"):
        expected = getattr(made, column)
        assert np.array_equal(np.concatenate([getattr(t, column) for t in played]), expected)
        assert np.array_equal(np.concatenate([getattr(t, column) for _, t in recorded]),
                              expected)
    # Tick times keep their spacing (scaled by the speed), moved to now.
    original = np.concatenate([t.ts for _, t in recorded])
    shifted = np.concatenate([t.ts for t in played])
    assert np.allclose(np.diff(shifted), np.diff(original) / 10, atol=0.01)
    assert replay.health.messages == len(played)


@pytest.mark.gen_test(timeout=30)
async def test_a_replay_server_streams_the_recording_and_skips_bad_lines(start_server, tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        '{"record":1,"feed":"x","symbols":["AAA","BBB"]}\n'
        '{"t":0,"sym":[0],"price":[10.5],"size":[1],"bid":[10.4],"ask":[10.6],"ts":[0]}\n'
        "not json\n"
        '{"t":50,"sym":[1],"price":[20.25],"size":[2],"bid":[20.2],"ask":[20.3],"ts":[50]}\n'
    )
    server = await start_server(feed="replay", feed_options=(("path", str(path)),))
    ws = await WSClient.connect(server)
    prices = {}
    while len(prices) < 2:
        msg = await ws.recv()
        columns = msg.get("ticks") or msg.get("quotes")
        prices.update(zip(columns["sym"], columns["price"], strict=True))
    assert prices == {"AAA": 10.5, "BBB": 20.25}
    assert server.feed.health.parse_errors == 1


def test_unknown_feeds_and_bad_plugins_are_refused_with_the_list():
    with pytest.raises(ConfigError) as e:
        feed_class("nasdaq")
    assert "sim, binance, coinbase, replay" in str(e.value)
    with pytest.raises(ConfigError):
        feed_class("json:dumps")  # not a Feed
    with pytest.raises(ConfigError):
        feed_class("no_such_module:Feed")


def test_the_docs_show_the_example_as_it_is():
    doc = (ROOT / "docs" / "feeds.md").read_text()
    example = (ROOT / "examples" / "sine_feed.py").read_text()
    assert f"```python\n{example}```" in doc


def _plugin_dir(tmp_path: Path) -> Path:
    """An installed distribution, as pip leaves it: a dist-info with an entry point."""
    dist = tmp_path / "site" / "sine_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sine-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dashboard.feeds]\nsine = examples.sine_feed:SineFeed\n"
    )
    return dist.parent


@pytest.mark.parametrize("how", ["dotted path", "entry point"])
def test_a_plugin_streams_to_a_client(tmp_path, how):
    site = _plugin_dir(tmp_path)
    feed = "examples.sine_feed:SineFeed" if how == "dotted path" else "sine"
    env_path = f"{site}:{ROOT}"
    server = DashboardProcess("--feed", feed, "--symbols", "FOO,BAR",
                              "--feed-option", "interval=0.05", env={"PYTHONPATH": env_path})

    async def receive() -> set[str]:
        class At:
            port = server.port
        ws = await WSClient.connect(At())  # type: ignore[arg-type]
        seen: set[str] = set()
        while seen != {"FOO", "BAR"}:
            seen |= set((await ws.recv()).get("ticks", {}).get("sym", []))
        ws.close()
        return seen

    try:
        assert asyncio.run(receive()) == {"FOO", "BAR"}
        url = f"http://127.0.0.1:{server.port}/healthz"
        health = orjson.loads(urllib.request.urlopen(url, timeout=5).read())
        assert health["feeds"][0]["name"] == "sine" and health["feeds"][0]["state"] == "live"
    finally:
        server.kill()


@pytest.mark.gen_test(timeout=20)
async def test_a_recording_that_fails_stops_and_serving_goes_on(start_server, caplog):
    server = await start_server(symbols=5, tick_rate=3000.0, record_path="/dev/full")
    seq = server.state.batcher.seq
    for _ in range(100):  # the 8 KiB write buffer fills well within a second at this rate
        await asyncio.sleep(0.05)
        if "recording to /dev/full failed" in caplog.text:
            break
    assert "recording stopped, serving goes on" in caplog.text
    before = server.state.batcher.seq
    await asyncio.sleep(0.3)
    assert server.state.batcher.seq > before > seq  # batches go on after the failure
    assert not server.failed.is_set()


class DueOnlyFeed(Feed):
    """A feed whose ticks come only through ``due()``: one per call, never yielded."""

    name = "due-only"

    def __init__(self) -> None:
        super().__init__()
        self._stopped = asyncio.Event()
        self.calls = 0

    @classmethod
    def create(cls, spec: FeedSpec) -> DueOnlyFeed:
        return cls()

    @property
    def symbols(self) -> Sequence[str]:
        return ("AAPL",)

    async def stop(self) -> None:
        self._stopped.set()

    async def ticks(self) -> AsyncIterator[Ticks]:
        await self._stopped.wait()
        return
        yield  # an async generator that yields nothing

    def due(self) -> Ticks | None:
        self.calls += 1
        one = np.array([100.0 + self.calls / 100])
        return Ticks(np.zeros(1, np.int32), one, np.ones(1), one - 0.01, one + 0.01,
                     np.array([1_700_000_000_000.0 + self.calls]))


@pytest.mark.gen_test(timeout=20)
async def test_each_batch_takes_what_the_feed_has_due_right_before_it_closes(start_server):
    server = await start_server(feed="tests.test_feeds:DueOnlyFeed", batch_ms=20.0)
    ws = await WSClient.connect(server, "symbols=AAPL")
    await ws.recv_type("snapshot")
    for _ in range(3):  # every batch holds the one tick due when it closed
        msg = await ws.recv_type("batch")
        assert msg["ticks"]["sym"] == ["AAPL"]
