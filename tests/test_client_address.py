"""The client's address behind trusted proxies, without a server."""

from __future__ import annotations

import pytest

from dashboard.core.client_address import client_address, networks

TRUSTED = networks("127.0.0.1/32,10.0.0.0/8,::1")


@pytest.mark.parametrize("peer, xff, fwd, expected", [
    # From a trusted proxy: the entry it added (the rightmost), not what the client wrote.
    ("127.0.0.1", ["203.0.113.9"], [], "203.0.113.9"),
    ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], [], "203.0.113.9"),
    ("127.0.0.1", ["6.6.6.6", "203.0.113.9"], [], "203.0.113.9"),  # two header lines
    # A chain of trusted proxies is skipped, right to left.
    ("127.0.0.1", ["6.6.6.6, 203.0.113.9, 10.1.2.3"], [], "203.0.113.9"),
    ("127.0.0.1", ["10.1.2.3, 10.4.5.6"], [], "10.1.2.3"),  # all trusted: the farthest
    # Garbage ends the walk at the last good hop.
    ("127.0.0.1", ["203.0.113.9, nonsense"], [], "127.0.0.1"),
    ("127.0.0.1", ["nonsense, 203.0.113.9"], [], "203.0.113.9"),
    # RFC 7239, when there is no X-Forwarded-For.
    ("127.0.0.1", [], ["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
    ("127.0.0.1", [], ['for="[2001:db8:cafe::17]:4711", for=10.0.0.5'], "2001:db8:cafe::17"),
    ("127.0.0.1", [], ["for=192.0.2.60:8080"], "192.0.2.60"),
    ("127.0.0.1", [], ["for=unknown"], "127.0.0.1"),
    ("127.0.0.1", [], ["for=_hidden, for=192.0.2.1"], "192.0.2.1"),
    ("::1", ["2001:db8::1"], [], "2001:db8::1"),
    ("::ffff:127.0.0.1", ["198.51.100.7"], [], "198.51.100.7"),  # v4-mapped peer
    # From anyone else the headers are ignored.
    ("198.51.100.1", ["203.0.113.9"], ["for=192.0.2.60"], "198.51.100.1"),
    ("127.0.0.1", [], [], "127.0.0.1"),
])
def test_the_client_is_the_first_untrusted_hop_from_the_right(peer, xff, fwd, expected):
    assert client_address(peer, xff, fwd, TRUSTED) == expected


def test_without_trusted_proxies_nobody_is_believed():
    assert client_address("127.0.0.1", ["203.0.113.9"], [], ()) == "127.0.0.1"


def test_cidr_lists_parse_and_bad_ones_name_the_entry():
    assert [str(n) for n in networks("10.0.0.0/8, ::1,192.168.1.7")] == [
        "10.0.0.0/8", "::1/128", "192.168.1.7/32"]
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8'"):
        networks("10.0.0.300/8")
