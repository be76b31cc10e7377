"""Which address a request comes from, when it came through proxies the server trusts.

From a peer inside ``--trusted-proxies`` only, the forwarding headers are believed, and
only as far as trusted hops wrote them: each proxy appends the address it got the request
from, so the list is read from the right, skipping the trusted proxies, and the first
address that is not one is the client. What a client wrote itself (left of that) is never
taken. ``X-Forwarded-For`` (de facto: what HAProxy's ``option forwardfor`` and nginx's
``$proxy_add_x_forwarded_for`` send) comes first; else ``Forwarded`` (RFC 7239 §4:
``for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"``). A hop that is not an
address (``unknown``, an obfuscated ``_name``, garbage) ends the walk at the hop after it:
nothing left of it can be trusted. From any other peer the headers are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(spec: str) -> tuple[Network, ...]:
    """``CIDR,CIDR,...`` (a bare address is its own /32 or /128); ValueError names the bad
    one."""
    out = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"expected CIDR blocks like 10.0.0.0/8,::1, got {item!r}") from None
    return tuple(out)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def forwarded_for(values: Iterable[str]) -> list[str]:
    """The ``for=`` node of each element of ``Forwarded`` header values, in order."""
    nodes = []
    for value in values:
        for element in value.split(","):
            node = ""
            for pair in element.split(";"):
                name, _, raw = pair.strip().partition("=")
                if name.strip().lower() == "for":
                    node = raw.strip().strip('"')
            nodes.append(node)
    return nodes


def _node_address(node: str) -> Address | None:
    """An RFC 7239 node: an IPv4 address with an optional ``:port``, or ``[IPv6]:port``."""
    if node.startswith("["):
        return _address(node[1:].partition("]")[0])
    return _address(node.rpartition(":")[0] if node.count(":") == 1 else node)


def client_address(
    peer: str, forwarded_for_values: Sequence[str], forwarded_values: Sequence[str],
    trusted: Sequence[Network],
) -> str:
    """The client's address: ``peer``'s own unless ``peer`` is a trusted proxy."""
    peer_address = _address(peer)
    if not trusted or peer_address is None or not _within(peer_address, trusted):
        return peer
    if forwarded_for_values:
        hops = [_address(h) for v in forwarded_for_values for h in v.split(",")]
    elif forwarded_values:
        hops = [_node_address(n) for n in forwarded_for(forwarded_values)]
    else:
        return peer
    client: Address = peer_address
    for hop in reversed(hops):
        if hop is None:
            break
        client = hop
        if not _within(hop, trusted):
            break
    return str(client)


def is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    """Whether ``peer`` (an address as text) is one of the trusted proxies."""
    address = _address(peer)
    return address is not None and _within(address, trusted)


def _within(address: Address, trusted: Sequence[Network]) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return any((mapped or address) in net for net in trusted)
