"""How a broker URL is shown in /healthz and logs: never with its password."""

import pytest

from dashboard.scaleout.health import redacted


@pytest.mark.parametrize("url, shown", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:s3cret@cache:6380/2", "redis://***@cache:6380/2"),
    ("rediss://user:s3cret@cache/0", "rediss://***@cache/0"),
    ("redis://cache/0?password=s3cret", "redis://cache/0"),
    ("unix:///run/redis.sock?password=s3cret&db=1", "unix:///run/redis.sock"),
    ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
])
def test_a_broker_url_is_shown_without_its_password(url, shown):
    assert redacted(url) == shown
    assert "s3cret" not in redacted(url)
