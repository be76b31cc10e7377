"""``--workers N``: one feed process and N edge processes on one port, all through Redis.

Each worker is the same command run as a child with its role and port appended (argparse
keeps the last value of a flag): the feed publishes to the broker and listens on a port of
its own for /healthz and /metrics; the edges listen on the shared port with SO_REUSEPORT,
so the kernel spreads connections over them. With ``--port 0`` the parent picks the port
by binding a socket it never listens on, which also keeps the port reserved.

The parent prints one ``listening on`` line once every worker listens. A worker that dies
is restarted with a growing delay while the others go on serving; the parent gives up
(exit 1) only when the feed, or every edge, keeps dying. The children run in a session of
their own and die with the parent, so a terminal's Ctrl-C reaches the parent alone, which
stops the edges first (clients are closed with 1001) and then the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dashboard.config import Config
from dashboard.errors import WorkerError
from dashboard.server import display_url
from dashboard.tasks import first
from feeds.base import jittered_backoff

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
#: Restart delays grow from the first to the second; a worker that ran for HEALTHY_AFTER_S
#: before it died is restarted at the shortest delay again.
RESTART_DELAY_S = (0.5, 30.0)
HEALTHY_AFTER_S = 60.0
#: A worker that died this many times in a row, each soon after starting, is not restarted.
MAX_FAILED_STARTS = 5

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: Set in a worker's environment: the supervisor's pid (see :func:`die_with_parent`).
PARENT_ENV = "DASHBOARD_SUPERVISOR_PID"


@dataclass(eq=False)  # a worker is itself, whatever its fields say
class Worker:
    name: str
    args: list[str]
    process: asyncio.subprocess.Process | None = None
    url: str = ""
    started_at: float = 0.0
    #: Deaths in a row, each before the worker had run HEALTHY_AFTER_S.
    failures: int = 0
    forwarding: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Until the worker listens, however long it waits for Redis or the feed; a worker
        that exits first did not start."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dashboard", *self.args, stdout=asyncio.subprocess.PIPE,
            start_new_session=True, env={**os.environ, PARENT_ENV: str(os.getpid())},
        )
        assert self.process.stdout is not None
        text = (await self.process.stdout.readline()).decode(errors="replace").strip()
        if not text.startswith("listening on "):
            await self.stop()
            raise WorkerError(f"{self.name} did not start (see its errors above)")
        self.url = text.removeprefix("listening on ")
        self.started_at = time.monotonic()
        self.forwarding = asyncio.create_task(self._forward(self.process.stdout))

    async def _forward(self, stdout: asyncio.StreamReader) -> None:
        """Whatever else the worker prints goes to our stderr: an unread pipe would fill up
        and stall it, and our stdout carries the one ``listening on`` line."""
        while chunk := await stdout.read(65536):  # not by line: a line may be any length
            sys.stderr.write(chunk.decode(errors="replace"))

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def keep(self, stopping: asyncio.Event) -> None:
        """Restart the worker whenever it dies, until asked to stop; returns when it keeps
        dying soon after each start."""
        while True:
            assert self.process is not None
            code = await self.process.wait()
            if stopping.is_set():
                return
            ran = time.monotonic() - self.started_at
            self.failures = 0 if ran >= HEALTHY_AFTER_S else self.failures + 1
            log.error("%s exited with status %s after %.1f s", self.name, code, ran)
            while True:
                if self.failures > MAX_FAILED_STARTS:
                    log.error("%s keeps dying; not restarting it", self.name)
                    return
                await asyncio.sleep(jittered_backoff(self.failures - 1, *RESTART_DELAY_S))
                if stopping.is_set():
                    return
                try:
                    await self.start()
                    break
                except WorkerError as e:
                    log.error("%s", e)
                    self.failures += 1


def die_with_parent() -> None:
    """Called first thing in a worker (``PARENT_ENV`` set): it must not outlive a parent
    killed outright, holding the port. Its own session keeps a terminal's Ctrl-C from it."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        sys.exit(1)


def worker_args(argv: Sequence[str], role: str, port: int, reuse_port: bool) -> list[str]:
    args = [*argv, "--workers", "1", "--role", role, "--port", str(port)]
    return [*args, "--reuse-port"] if reuse_port else args


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never-listening SO_REUSEPORT socket: it picks the port for ``--port 0``
    and holds it, while only the workers' listening sockets receive connections. Another
    deployment's workers would share such a port without a word: a port something already
    answers on is refused (``OSError``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        _refuse_if_answering(host, sock.getsockname()[1])
    except OSError:
        sock.close()
        raise
    return sock


def _refuse_if_answering(host: str, port: int) -> None:
    """A wildcard host is probed on both loopbacks (a listener on one specific interface
    address goes unseen)."""
    for local in {"0.0.0.0": ("127.0.0.1",), "": ("127.0.0.1", "::1"),
                  "::": ("127.0.0.1", "::1")}.get(host, (host,)):
        try:
            socket.create_connection((local, port), timeout=1.0).close()
        except OSError:
            continue
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))


async def supervise(config: Config, argv: Sequence[str]) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        placeholder = reserve_port(config.host, config.port)
    except OSError as e:
        print(f"market-dashboard: error: argument --port: cannot listen on "
              f"{display_url(config.host, config.port)}: {e.strerror or e}", file=sys.stderr)
        return 1
    with placeholder:
        port = placeholder.getsockname()[1]
        feed = [Worker("feed", worker_args(argv, "feed", 0, False))] if config.role == "all" else []
        edges = [
            Worker(f"edge {i + 1}", worker_args(argv, "edge", port, True))
            for i in range(config.workers)
        ]
        try:
            try:
                if not await first(_start(feed, edges), stopping.wait()):
                    return 0
            except WorkerError as e:
                print(f"market-dashboard: error: {e}", file=sys.stderr)
                return 1
            print(f"listening on {display_url(config.host, port, config.certfile is not None)}",
                  flush=True)
            return await _watch(feed, edges, stopping)
        finally:
            await _stop_all(edges, feed)


async def _start(feed: list[Worker], edges: list[Worker]) -> None:
    for worker in feed:  # the feed first: edges then find its symbols in Redis
        await worker.start()
        log.info("feed process %s", worker.url)
    await asyncio.gather(*(w.start() for w in edges))


async def _watch(feed: list[Worker], edges: list[Worker], stopping: asyncio.Event) -> int:
    """Until asked to stop (0), or until the feed or every edge keeps dying (1)."""
    keepers = {w: asyncio.create_task(w.keep(stopping)) for w in feed + edges}
    stop = asyncio.create_task(stopping.wait())
    try:
        while True:
            running = [t for t in keepers.values() if not t.done()]
            await asyncio.wait([stop, *running], return_when=asyncio.FIRST_COMPLETED)
            if stopping.is_set():
                return 0
            given_up = {w for w, task in keepers.items() if task.done()}
            if any(w in given_up for w in feed) or all(w in given_up for w in edges):
                print("market-dashboard: error: workers keep dying (see their errors above)",
                      file=sys.stderr)
                return 1
    finally:
        for task in (stop, *keepers.values()):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(stop, *keepers.values(), return_exceptions=True)


async def _stop_all(edges: list[Worker], feed: list[Worker]) -> None:
    await asyncio.gather(*(w.stop() for w in edges))
    await asyncio.gather(*(w.stop() for w in feed))
