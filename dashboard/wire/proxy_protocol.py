"""The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a load balancer sends
first on each connection to say whose it is, what ``send-proxy`` / ``send-proxy-v2`` in
HAProxy and ``proxy_protocol on`` in nginx's stream module write.

A reader takes ``PREFIX`` bytes, which :func:`is_v1` tells apart; then a v1 line to its
end for :func:`source_v1`, or v2's fixed 16 bytes and the :func:`v2_length` after them for
:func:`source_v2`. Each gives the client's address and port, or None
when the header names no client (v1 ``UNKNOWN``, v2 ``LOCAL``, a family other than TCP over
IPv4 or IPv6): the connection is then the proxy's own, a health check. A header that is not
one raises ``ValueError`` saying why.
"""

from __future__ import annotations

import ipaddress

V1 = b"PROXY"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: What tells the versions apart: ``PROXY`` or the start of v2's signature.
PREFIX = 5
#: The spec's longest v1 line, ``\r\n`` included.
V1_MAX_BYTES = 107
#: v2: the signature, version and command, family, and the length of what follows.
V2_FIXED_BYTES = 16
#: What v2's addresses take, by family and transport byte: TCP over IPv4, over IPv6.
_V2_TCP = {0x11: 4, 0x21: 16}

Source = tuple[str, int]


def is_v1(prefix: bytes) -> bool:
    if prefix == V1:
        return True
    if prefix == V2_SIGNATURE[:PREFIX]:
        return False
    raise ValueError("no PROXY protocol header")


def source_v1(line: bytes) -> Source | None:
    """``PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\\r\\n``: (``192.0.2.1``, 56324)."""
    if not line.endswith(b"\r\n") or len(line) > V1_MAX_BYTES:
        raise ValueError("PROXY v1 line not ended within 107 bytes")
    parts = line[:-2].split(b" ")
    if parts[:2] == [V1, b"UNKNOWN"]:
        return None
    if len(parts) != 6 or parts[0] != V1 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ValueError("PROXY v1 line is not PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    version = 4 if parts[1] == b"TCP4" else 6
    try:
        src = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
        ports = [int(p) for p in parts[4:]]
    except (UnicodeDecodeError, ValueError):
        raise ValueError("PROXY v1 line has a bad address or port") from None
    if src.version != version or not all(0 <= p <= 65535 and b"%d" % p == raw
                                         for p, raw in zip(ports, parts[4:], strict=True)):
        raise ValueError("PROXY v1 line has a bad address or port")
    return str(src), ports[0]


def v2_length(fixed: bytes) -> int:
    """How many bytes follow v2's fixed 16 (addresses and TLVs)."""
    if fixed[:12] != V2_SIGNATURE or fixed[12] >> 4 != 2 or fixed[12] & 0x0F > 1:
        raise ValueError("PROXY v2 header with a bad signature, version or command")
    return int.from_bytes(fixed[14:16], "big")


def source_v2(fixed: bytes, rest: bytes) -> Source | None:
    if fixed[12] & 0x0F == 0:  # LOCAL: the proxy's own connection
        return None
    size = _V2_TCP.get(fixed[13])
    if size is None:
        return None
    if len(rest) < 2 * size + 4:
        raise ValueError("PROXY v2 header too short for its addresses")
    src = ipaddress.ip_address(rest[:size])
    return str(src), int.from_bytes(rest[2 * size:2 * size + 2], "big")
