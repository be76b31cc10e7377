"""Server-Sent Events formatting (WHATWG HTML §9.2 "Server-sent events"), pure.

    "If the line starts with a U+003A COLON character (:) — Ignore the line."
    "If the field name is 'id' — If the field value does not contain U+0000 NULL, then set
    the last event ID buffer to the field value."

Field values end at a line break, so ``id`` and ``event`` are stripped of CR and LF; ``data``
is split across ``data:`` lines (compact JSON has none).
"""

from __future__ import annotations

_BREAKS = str.maketrans("", "", "\r\n\0")


def _field(value: str) -> bytes:
    return value.translate(_BREAKS).encode()


def event(data: bytes, *, event: str | None = None, id: str | int | None = None) -> bytes:
    out = []
    if id is not None:
        out.append(b"id: " + _field(str(id)) + b"\n")
    if event is not None:
        out.append(b"event: " + _field(event) + b"\n")
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        out.append(b"data: " + line + b"\n")
    out.append(b"\n")
    return b"".join(out)


def comment(text: str) -> bytes:
    """A comment line: ignored by EventSource, keeps proxies and idle timers awake."""
    return b": " + _field(text) + b"\n\n"


def retry(ms: int) -> bytes:
    """Reconnection time advice for EventSource."""
    return b"retry: %d\n\n" % ms
