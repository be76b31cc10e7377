"""WebSocket frame headers built once per payload, so every client gets the same bytes.

RFC 6455 §5.2::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-------+-+-------------+-------------------------------+
     |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
     |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
     |N|V|V|V|       |S|             |   (if payload len==126/127)   |
     | |1|2|3|       |K|             |                               |

§5.1: "A server MUST NOT mask any frames that it sends to the client", so a server frame is
the same bytes for every connection.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_BINARY = 0x2
FIN = 0x80


def frame(payload: bytes, opcode: int) -> bytes:
    """One unfragmented, unmasked frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", FIN | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", FIN | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", FIN | opcode, 127, n)
    return header + payload
