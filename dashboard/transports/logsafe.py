"""Log lines that a client cannot forge.

Tornado writes client text into its logs as it came: the request line in every access line
(bytes 0x80-0xFF decoded as Latin-1, so U+0085 NEL, a line break to many log readers, and
the C1 escapes of terminals get through), URL-decoded paths in warnings (``%0a`` becomes a
newline), header values in its "Malformed HTTP message" lines. A filter on Tornado's loggers
escapes whatever is not printable in each finished message, so every record is one line of
visible text. The dashboard's own log calls interpolate only server-side values: peer
addresses, counts, names from the configuration or the feed.
"""

from __future__ import annotations

import logging

#: Tornado's loggers (``tornado.log``): access lines, application errors, everything else.
TORNADO_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")


def printable(text: str) -> str:
    """``text`` with every character that is not printable (line breaks, C0 and C1 controls,
    separators) as a backslash escape: ``\\n``, ``\\x85``, ``\\u2028``."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


class OneLine(logging.Filter):
    """Makes a record's message :func:`printable`; a traceback (``exc_info``), which the
    handler formats on lines of its own, is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = printable(message), None
        return True


_ONE_LINE = OneLine()


def guard_tornado_logs() -> None:
    """Filter Tornado's loggers (once per process, however many servers it starts): a
    logger's filters see only the records logged on it, so each one gets the filter."""
    for name in TORNADO_LOGGERS:
        logging.getLogger(name).addFilter(_ONE_LINE)
