"""Debian's haproxy and nginx in front of a test server, configured as
``docs/deployment.md`` shows (plain HTTP on loopback instead of TLS)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.redis_server import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy_config(port: int, backend_port: int) -> str:
    """The guide's configuration, with one edge and no TLS."""
    return f"""
defaults
    mode http
    timeout connect 5s
    timeout client  1h
    timeout server  1h
    timeout tunnel  1h
    option http-server-close
    option forwardfor

frontend dashboard
    bind 127.0.0.1:{port}
    default_backend edges

backend edges
    balance leastconn
    server edge1 127.0.0.1:{backend_port}
"""


class Proxy:
    """A proxy process listening on ``port``, stopped with :meth:`stop`."""

    def __init__(self, command: list[str], config: str, port: int) -> None:
        self.port = port
        self._dir = tempfile.TemporaryDirectory()
        self.config_path = Path(self._dir.name) / "proxy.conf"
        self.config_path.write_text(config)
        self.proc = subprocess.Popen([*command, str(self.config_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"{command[0]} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._dir.cleanup()


def haproxy(backend_port: int) -> Proxy:
    port = free_port()
    return Proxy([HAPROXY, "-db", "-f"], haproxy_config(port, backend_port), port)
