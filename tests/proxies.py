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
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def haproxy_config(port: int, backend_port: int, send_proxy: str = "") -> str:
    """The guide's configuration, with one edge and no TLS; with ``send_proxy``
    (``send-proxy`` or ``send-proxy-v2``), the PROXY protocol names the client instead of
    ``X-Forwarded-For``."""
    forwardfor = "" if send_proxy else "option forwardfor"
    return f"""
defaults
    mode http
    timeout connect 5s
    timeout client  1h
    timeout server  1h
    timeout tunnel  1h
    option http-server-close
    {forwardfor}

frontend dashboard
    bind 127.0.0.1:{port}
    default_backend edges

backend edges
    balance leastconn
    server edge1 127.0.0.1:{backend_port} {send_proxy}
"""


def nginx_config(port: int, backend_port: int, prefix: str, upgrades: bool = True) -> str:
    """The guide's server block, with one edge and no TLS; without ``upgrades``, the plain
    ``proxy_pass`` of a proxy that passes no WebSocket upgrade."""
    ws = """
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";""" if upgrades else ""
    return f"""
daemon off;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    upstream dashboard_edges {{
        server 127.0.0.1:{backend_port} max_fails=0;
        keepalive 32;
        keepalive_timeout 5s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /ws {{
            proxy_pass http://dashboard_edges;{ws}
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
        location ~ ^/(sse|stream)$ {{
            proxy_pass http://dashboard_edges;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_cache off;
            gzip off;
            proxy_read_timeout 3600s;
        }}
        location / {{
            proxy_pass http://dashboard_edges;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


class Proxy:
    """A proxy process listening on ``port``, stopped with :meth:`stop`."""

    def __init__(self, command: list[str], config: str, port: int,
                 workdir: tempfile.TemporaryDirectory[str] | None = None) -> None:
        self.port = port
        self._dir = workdir or tempfile.TemporaryDirectory()
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


def haproxy(backend_port: int, send_proxy: str = "") -> Proxy:
    port = free_port()
    return Proxy([HAPROXY, "-db", "-f"], haproxy_config(port, backend_port, send_proxy), port)


def nginx(backend_port: int, upgrades: bool = True) -> Proxy:
    port, workdir = free_port(), tempfile.TemporaryDirectory()
    config = nginx_config(port, backend_port, workdir.name, upgrades)
    return Proxy([NGINX, "-p", workdir.name, "-c"], config, port, workdir)
