"""The bundled load test against a live server: its report agrees with /metrics."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.clients import metric


async def loadtest(server, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    html = tmp_path / "report.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dashboard.loadtest", "--url", f"http://127.0.0.1:{server.port}",
        "--ramp-s", "0.5", "--duration-s", "2.5", "--quiet", "--json", str(out),
        "--html", str(html), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert b"frames/s" in stdout and b"latency" in stdout
    assert html.read_text().startswith("<!doctype html>")
    return json.loads(out.read_text())


def sent(server, transport: str) -> tuple[float, float]:
    text = server.state.metrics.exposition().decode()
    return (metric(text, "dashboard_frames_sent_total", transport=transport),
            metric(text, "dashboard_bytes_sent_total", transport=transport))


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("transport, encoding, accept, coding", [
    ("ws", "br", None, None), ("ws", "json", None, None),
    ("sse", "json", None, "zstd"),  # by default, what a browser asks for
    ("stream", "json", None, "zstd"), ("sse", "json", "gzip", "gzip"),
    ("stream", "json", "identity", "identity"),
])
async def test_the_report_agrees_with_what_the_server_sent(
    start_server, tmp_path, transport, encoding, accept, coding
):
    server = await start_server(batch_ms=50.0, max_connections_per_ip=0)
    report = await loadtest(server, tmp_path, "--clients", "40", "--transport", transport,
                            "--encoding", encoding, "--processes", "2", "--sample", "0.25",
                            *(["--accept-encoding", accept] if accept else []))
    frames, nbytes = sent(server, transport)
    assert report["clients"]["connected"] == 40 and report["clients"]["failed"] == 0
    assert report["clients"]["codings"] == ({coding: 40} if coding else {})
    assert report["frames_total"] == pytest.approx(frames, rel=0.05)
    assert report["bytes_total"] == pytest.approx(nbytes, rel=0.05)
    assert report["gaps_total"] == 0
    assert report["clients"]["sampled"] == 10
    assert report["ticks_per_s"] > 0 and report["latency_ms"]["p99"] is not None
    assert report["frames_per_s"] == pytest.approx(40 * 20, rel=0.15)


@pytest.mark.gen_test(timeout=90)
async def test_slow_clients_are_counted_as_slow_not_as_gaps(start_server, tmp_path):
    server = await start_server(symbols=50, tick_rate=20_000.0, batch_ms=10.0,
                                max_bytes_per_s=0.0, slow_client_timeout_s=0.5,
                                max_connections_per_ip=0)
    report = await loadtest(server, tmp_path, "--clients", "20", "--slow-fraction", "0.25",
                            "--sample", "1")
    clients = report["clients"]
    assert clients["slow"] == 5 and clients["connected"] == 20
    assert report["gaps_total"] == 0
    text = server.state.metrics.exposition().decode()
    assert metric(text, "dashboard_slow_consumers_dropped_total", transport="ws") == \
        clients["slow_dropped"]


@pytest.mark.gen_test(timeout=10)
async def test_an_upgrade_after_the_timeout_closes_the_client_without_an_error(caplog):
    from dashboard.loadtest.loadclient import count_frames

    closed = asyncio.Event()

    async def late_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n\x81\x02{}")
        if await reader.read() == b"":  # the client hung up
            closed.set()

    server = await asyncio.start_server(late_upgrade, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with pytest.raises(TimeoutError):
        await count_frames("127.0.0.1", port, "/ws", lambda n: None, timeout=0.1)
    await asyncio.wait_for(closed.wait(), 5)
    server.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


async def one_shot_server(frames: list[bytes]) -> tuple[asyncio.Server, int, asyncio.Queue]:
    """A fake WebSocket server: upgrades, writes each of ``frames`` (bytes, in separate
    writes 50 ms apart), and puts what the client sends back on the queue."""
    received: asyncio.Queue = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        for data in frames:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.05)
        while data := await reader.read(1024):
            received.put_nowait(data)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


@pytest.mark.gen_test(timeout=10)
async def test_a_reading_client_gets_each_message_whole_stamped_when_its_last_byte_came():
    import time

    from dashboard.loadtest.loadclient import count_frames

    long = b"x" * 300  # a 16-bit length
    frame1 = b"\x81\x05hello"
    frame2 = b"\x82\x7e" + len(long).to_bytes(2, "big") + long
    server, port, received = await one_shot_server(
        [frame1[:4], frame1[4:] + b"\x89\x02hi\x8a\x00" + frame2[:100], frame2[100:]])
    got: list[tuple[bytes, float]] = []
    sizes: list[int] = []
    started = time.time()
    counter = await count_frames("127.0.0.1", port, "/ws", sizes.append,
                                 lambda payload, at: got.append((payload, at)) is None)
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.02)
    assert [p for p, _ in got] == [b"hello", long]  # not the unasked-for pong
    assert sizes == [len(frame1), len(frame2)]
    # each stamped on the write that completed it, 50 ms after the one before
    assert started + 0.04 < got[0][1] < got[1][1] - 0.04
    pong = await asyncio.wait_for(received.get(), 2)
    assert pong[0] == 0x8A and pong[1] == 0x80 | 2  # a masked pong with the ping's 2 bytes
    counter.close()
    server.close()


@pytest.mark.gen_test(timeout=10)
async def test_a_sampled_client_that_cannot_read_a_message_stops_and_says_so():
    import time

    from dashboard.loadtest.clients import Meter, Outcomes, Sample, Target, websocket_client

    server, port, _ = await one_shot_server([b"\x81\x03{}]"])
    meter, outcomes = Meter(), Outcomes()
    await asyncio.wait_for(websocket_client(
        Target("127.0.0.1", port), "", "json", Sample(meter), meter, outcomes,
        stop_at=time.time() + 5), 5)
    assert outcomes.connected == 1
    assert outcomes.closed == {"undecodable": 1}
    server.close()
