"""``--workers N``: one feed process and N edge processes on one port, all through Redis.

Each worker is the same command run as a child with its role and port appended (argparse
keeps the last value of a flag): the feed publishes to the broker and listens on a port of
its own for /healthz and /metrics; the edges listen on the shared port with SO_REUSEPORT,
so the kernel spreads connections over them. With ``--port 0`` the parent picks the port
by binding a socket it never listens on, which also keeps the port reserved. The parent
prints one ``listening on`` line once every worker listens, restarts a worker that dies,
and passes SIGINT/SIGTERM on (edges first, so clients are closed before the feed stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from dashboard.config import Config
from dashboard.server import display_url

log = logging.getLogger(__name__)

#: How long a worker may take to print its ``listening on`` line.
START_TIMEOUT_S = 30.0
#: A worker that dies this many times within RESTART_WINDOW_S is not restarted again.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 10.0


class WorkerError(Exception):
    pass


@dataclass
class Worker:
    name: str
    args: list[str]
    process: asyncio.subprocess.Process | None = None
    url: str = ""
    deaths: list[float] = field(default_factory=list)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dashboard", *self.args, stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith("listening on "):
            raise WorkerError(f"{self.name} did not start (see its errors above)")
        self.url = text.removeprefix("listening on ")

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def stop(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def worker_args(argv: Sequence[str], role: str, port: int, reuse_port: bool) -> list[str]:
    args = [*argv, "--workers", "1", "--role", role, "--port", str(port)]
    return [*args, "--reuse-port"] if reuse_port else args


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never-listening SO_REUSEPORT socket: it picks the port for ``--port 0``
    and holds it, while only the workers' listening sockets receive connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def supervise(config: Config, argv: Sequence[str]) -> int:
    with reserve_port(config.host, config.port) as placeholder:
        port = placeholder.getsockname()[1]
        feed = [Worker("feed", worker_args(argv, "feed", 0, False))] if config.role == "all" else []
        edges = [
            Worker(f"edge {i + 1}", worker_args(argv, "edge", port, True))
            for i in range(config.workers)
        ]
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        try:
            for worker in feed:  # the feed first: edges then find its symbols in Redis
                await worker.start()
                log.info("feed process %s", worker.url)
            await asyncio.gather(*(w.start() for w in edges))
        except WorkerError as e:
            print(f"market-dashboard: error: {e}", file=sys.stderr)
            await _stop_all(edges, feed)
            return 1
        tls = config.certfile is not None
        print(f"listening on {display_url(config.host, port, tls)}", flush=True)
        code = await _watch(feed + edges, stopping)
        await _stop_all(edges, feed)
        return code


async def _watch(workers: list[Worker], stopping: asyncio.Event) -> int:
    """Until asked to stop: restart a worker that dies, unless it keeps dying (exit 1)."""
    while not stopping.is_set():
        waits = {asyncio.ensure_future(w.process.wait()): w for w in workers if w.process}
        stop = asyncio.ensure_future(stopping.wait())
        done, _ = await asyncio.wait([stop, *waits], return_when=asyncio.FIRST_COMPLETED)
        for task in (stop, *waits):
            task.cancel()
        if stopping.is_set():
            return 0
        for task in done:
            worker = waits.get(task)
            if worker is None:
                continue
            now = time.monotonic()
            worker.deaths = [t for t in worker.deaths if now - t < RESTART_WINDOW_S] + [now]
            log.error("%s exited with status %s", worker.name, task.result())
            if len(worker.deaths) > MAX_RESTARTS:
                log.error("%s keeps dying; stopping", worker.name)
                return 1
            await asyncio.sleep(1.0)
            if stopping.is_set():  # a Ctrl-C reaches the workers too: not a death
                return 0
            with contextlib.suppress(WorkerError):
                await worker.start()
    return 0


async def _stop_all(edges: list[Worker], feed: list[Worker]) -> None:
    await asyncio.gather(*(w.stop() for w in edges))
    await asyncio.gather(*(w.stop() for w in feed))
