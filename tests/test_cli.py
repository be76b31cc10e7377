"""The command line and the process lifecycle, with the real command in a child process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest

from dashboard.core import auth
from tests.clients import StreamClient, WSClient
from tests.process import DashboardProcess

SECRET = "cli-test-secret-" + "z" * 32
SHORT = "hunter2-is-too-short"


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with only ``env`` as the auth environment."""
    clean = {k: v for k, v in os.environ.items() if k != auth.SECRET_ENV}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=20, env={**clean, **env})


def assert_one_line_error(result: subprocess.CompletedProcess[str], prog: str, flag: str):
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error:") and flag in lines[0]
    assert result.stdout == ""
    assert SHORT not in result.stderr  # a secret, even a bad one, is never printed


class _At:
    """Just enough of a Server for the test clients: where it listens."""

    def __init__(self, port: int) -> None:
        self.port = port


@pytest.mark.parametrize("args, flag", [
    (["--port", "http"], "--port"),
    (["--port", "70000"], "--port"),
    (["--symbols", "0"], "--symbols"),
    (["--symbols", "AAPL,<b>"], "--symbols"),
    (["--symbols", "AAPL,AAPL"], "--symbols"),
    (["--tick-rate", "-5"], "--tick-rate"),
    (["--batch-ms", "nan"], "--batch-ms"),
    (["--seed", "x"], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--feed", "nasdaq-direct"], "--feed"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--broker", "kafka://x"], "--broker"),
    (["--trusted-proxies", "10.0.0.0/33"], "--trusted-proxies"),
    (["--trusted-proxies", "nginx"], "--trusted-proxies"),
    (["--proxy-protocol"], "--proxy-protocol"),
    (["--role", "edge"], "--role"),
    (["--role", "feed"], "--role"),
    (["--role", "middle", "--broker", "redis://127.0.0.1:1/0"], "--role"),
    (["--workers", "2"], "--workers"),
    (["--workers", "0", "--broker", "redis://127.0.0.1:1/0"], "--workers"),
    (["--workers", "2", "--role", "feed", "--broker", "redis://127.0.0.1:1/0"], "--workers"),
])
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(args, flag):
    assert_one_line_error(run("dashboard", *args), "market-dashboard", flag)


def test_a_port_in_use_is_a_one_line_error():
    first = DashboardProcess("--symbols", "3")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dashboard", "--port", str(first.port)],
            capture_output=True, text=True, timeout=20,
        )
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert "address already in use" in result.stderr.lower()
    finally:
        first.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_websockets_with_1001_ends_streams_and_exits_0(sig):
    server = DashboardProcess("--symbols", "5", "--batch-ms", "20")

    async def clients() -> tuple[int | None, int]:
        at = _At(server.port)
        ws = await WSClient.connect(at)  # type: ignore[arg-type]
        sse = StreamClient()
        await sse.open(f"http://127.0.0.1:{server.port}/sse", "sse")
        await ws.recv_type("batch")
        await sse.recv_event()
        server.proc.send_signal(sig)
        code, _ = await ws.closed()
        assert sse.done is not None
        status = await asyncio.wait_for(sse.done, 5)  # the stream ended
        return code, status

    try:
        close_code, sse_status = asyncio.run(clients())
        exit_code, seconds = server.wait(timeout=10)
    finally:
        server.kill()
    assert close_code == 1001
    assert sse_status == 200
    assert exit_code == 0
    assert seconds < 2.5


def test_an_edge_waits_for_unreachable_redis_and_stops_at_once_when_told(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", "0", "--role", "edge",
         "--broker", f"redis://:hunter2@127.0.0.1:{port}/0"],
        stdout=subprocess.PIPE, stderr=err, text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while "unreachable" not in (tmp_path / "stderr").read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert proc.poll() is None  # still retrying, not listening
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
    assert proc.stdout is not None and proc.stdout.read() == ""
    text = (tmp_path / "stderr").read_text()
    assert f"redis://***@127.0.0.1:{port}/0 unreachable" in text, text
    assert "hunter2" not in text and "Traceback" not in text


def test_the_console_script_and_module_are_the_same_command():
    script = subprocess.run(
        [sys.executable, "-c", "from dashboard.cli import main; main(['--version'])"],
        capture_output=True, text=True, timeout=20,
    )
    module = subprocess.run(
        [sys.executable, "-m", "dashboard", "--version"], capture_output=True, text=True,
        timeout=20,
    )
    assert script.stdout == module.stdout
    assert script.stdout.startswith("market-dashboard ")


# -- auth: the server's secret and the token command ---------------------------------------


@pytest.mark.parametrize("module, prog", [("dashboard", "market-dashboard"),
                                          ("dashboard.mint", "market-dashboard-token")])
@pytest.mark.parametrize("args, env", [
    (["--auth-token-secret", SHORT], {}),
    ([], {auth.SECRET_ENV: SHORT}),
    ([], {auth.SECRET_ENV: ""}),
])
def test_a_short_secret_is_one_line_naming_the_flag_and_not_the_secret(module, prog, args, env):
    result = run(module, *args, **env)
    assert_one_line_error(result, prog, "--auth-token-secret")
    assert "secrets.token_urlsafe(32)" in result.stderr


@pytest.mark.parametrize("args, flag", [
    ([], "--auth-token-secret"),  # no secret at all
    (["--ttl", "0"], "--ttl"),
    (["--ttl", "2 weeks"], "--ttl"),
    (["--ttl", "400d"], "--ttl"),
    (["--symbols", "AAPL,<b>"], "--symbols"),
    (["--subject", ""], "--subject"),
    (["--nope"], "--nope"),
])
def test_a_bad_token_command_flag_is_one_line_naming_it(args, flag):
    env = {} if flag == "--auth-token-secret" else {auth.SECRET_ENV: SECRET}
    assert_one_line_error(run("dashboard.mint", *args, **env), "market-dashboard-token", flag)


@pytest.mark.parametrize("args, env", [
    (["--auth-token-secret", SECRET], {}),
    ([], {auth.SECRET_ENV: SECRET}),
])
def test_the_token_command_prints_a_token_the_server_accepts(args, env):
    result = run("dashboard.mint", *args, "--ttl", "2h", "--symbols", "AAPL,MSFT",
                 "--subject", "alice", **env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # the token alone, for scripts
    grant = auth.verify(SECRET.encode(), token, time.time() + 7200 - 60)
    assert grant == auth.Grant(frozenset({"AAPL", "MSFT"}), "alice")
    with pytest.raises(auth.Unauthorized):
        auth.verify(SECRET.encode(), token, time.time() + 7200 + 60)


def test_a_server_with_the_secret_in_its_environment_serves_tokens_and_logs_none():
    server = DashboardProcess("--symbols", "AAPL,MSFT", env={auth.SECRET_ENV: SECRET})
    base = f"http://127.0.0.1:{server.port}/api/symbols"
    try:
        token = run("dashboard.mint", "--symbols", "MSFT",
                    **{auth.SECRET_ENV: SECRET}).stdout.strip()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base, timeout=5)
        assert refused.value.code == 401
        body = urllib.request.urlopen(f"{base}?token={token}", timeout=5).read()
        assert orjson.loads(body) == {"symbols": ["MSFT"]}
        server.proc.send_signal(signal.SIGTERM)  # the log is whole once it has exited
        assert server.wait(timeout=10)[0] == 0
    finally:
        server.kill()
    assert server.proc.stderr is not None
    log = server.proc.stderr.read()
    assert "GET /api/symbols?token=[redacted] (127.0.0.1)" in log
    assert token not in log and SECRET not in log
