"""Running the real ``market-dashboard`` command in a child process."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(r"^listening on http://127\.0\.0\.1:(\d+)$")


class DashboardProcess:
    def __init__(
        self, *args: str, python: str = sys.executable, cwd: Path | None = None,
        env: dict[str, str] | None = None, start_timeout: float = 60.0,
    ) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "dashboard", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
            env={**os.environ, **env} if env else None,
        )
        assert self.proc.stdout is not None
        # Flushed as soon as it listens; a process that never does must fail the test, not
        # hang it.
        ready, _, _ = select.select([self.proc.stdout], [], [], start_timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        match = LISTENING.match(line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no listening line: {line!r} {self.proc.stderr.read()!r}")
        self.port = int(match.group(1))

    def wait(self, timeout: float) -> tuple[int, float]:
        """Exit status, and seconds it took to exit."""
        start = time.monotonic()
        code = self.proc.wait(timeout)
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
