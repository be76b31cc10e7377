"""A plain (not editable) ``pip install .`` into a fresh virtual environment serves the page."""

from __future__ import annotations

import subprocess
import urllib.request
import venv
from pathlib import Path

from tests.process import DashboardProcess

ROOT = Path(__file__).resolve().parent.parent


def test_a_fresh_venv_install_serves_the_page(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True, timeout=600,
    )
    assert (env_dir / "bin" / "market-dashboard").exists()
    assert (env_dir / "bin" / "market-dashboard-token").exists()
    # From an unrelated directory, so nothing is imported from the checkout.
    server = DashboardProcess("--symbols", "3", python=python, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{server.port}"
        page = urllib.request.urlopen(base + "/", timeout=5).read()
        assert b'src="app.js"' in page
        for asset in ("/app.js", "/connection.js", "/style.css"):
            assert urllib.request.urlopen(base + asset, timeout=5).status == 200
        origin = subprocess.run(
            [python, "-c", "import dashboard; print(dashboard.__file__)"],
            capture_output=True, text=True, cwd=tmp_path, check=True,
        ).stdout
        assert str(env_dir) in origin and str(ROOT) not in origin
    finally:
        server.kill()
