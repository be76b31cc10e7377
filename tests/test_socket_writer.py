"""Writing straight to a socket, on a real socket pair whose reader stops reading."""

from __future__ import annotations

import asyncio
import socket

import pytest
import tornado.iostream

from dashboard.transports.socket_writer import SocketWriter


def pair() -> tuple[tornado.iostream.IOStream, socket.socket, list[str]]:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    resets: list[str] = []
    return tornado.iostream.IOStream(ours), peer, resets


async def read_all(peer: socket.socket, n: int) -> bytes:
    """What the peer reads, while the loop goes on writing what waits."""
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < n:
        got += await loop.sock_recv(peer, 1 << 16)
    return got


@pytest.mark.gen_test(timeout=10)
async def test_what_a_full_socket_does_not_take_waits_in_order_and_arrives_whole():
    stream, peer, resets = pair()
    writer = SocketWriter(stream, lambda: resets.append("reset"))
    chunks = [bytes([i]) * 3000 for i in range(1, 40)]
    results = [writer.write(chunk) for chunk in chunks]
    assert results[0] is True  # an empty socket takes a small write whole
    waiting = [r for r in results if r is not True]
    assert waiting and all(r is not None for r in waiting)  # full: buffered, not reset
    # Past the first partial write every write goes through the stream, in order.
    assert writer.pending._size > 0
    received = await read_all(peer, sum(map(len, chunks)))
    for r in waiting:
        await r
    assert received == b"".join(chunks)
    assert resets == []
    stream.close()
    peer.close()


def test_a_full_socket_took_nothing_and_a_gone_one_says_so():
    stream, peer, resets = pair()
    writer = SocketWriter(stream, lambda: resets.append("reset"))
    assert writer.unsent(BlockingIOError()) == 0 and resets == []
    assert writer.rest(b"abc", -1) is None
    peer.close()
    with pytest.raises(OSError) as raised:
        while True:
            writer.send(b"x" * 4096)
    assert writer.unsent(raised.value) == -1 and resets == ["reset"]
    stream.close()
