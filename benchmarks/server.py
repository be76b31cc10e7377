"""Running a server for a benchmark: a child process, optionally pinned to a core, that
prints ``listening on http://127.0.0.1:PORT`` once it listens."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *cmd]
    return list(cmd)


class ServerProcess:
    def __init__(self, *args: str, cpu: int | None = None,
                 command: Sequence[str] | None = None) -> None:
        cmd = command or [sys.executable, "-m", "dashboard", "--port", "0",
                          "--log-level", "warning", *args]
        # stderr is dropped: the naive baseline logs every write to a closed client.
        self.proc = subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(match.group(1))
        self.pid = self.proc.pid  # taskset execs the server: the pid is the server's own

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) * 1024 if match else 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def loadtest(port: int, *args: str, cpu: int | None = None,
             timeout_s: float = 600) -> dict[str, Any]:
    """Run the bundled load test against ``port`` and return its JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(pinned([
            sys.executable, "-m", "dashboard.loadtest", "--url", f"http://127.0.0.1:{port}",
            "--quiet", "--json", out.name, *args,
        ], cpu), check=True, stdout=subprocess.DEVNULL, timeout=timeout_s)
        report: dict[str, Any] = json.loads(Path(out.name).read_text())
    return report
