"""Log messages carrying client text stay one line of visible text."""

from __future__ import annotations

import logging

import pytest

from dashboard.transports.logsafe import OneLine, printable


@pytest.mark.parametrize("text, escaped", [
    ("GET /a\r\nFAKE 200", "GET /a\\r\\nFAKE 200"),
    ("/a\x85b", "/a\\x85b"),  # NEL: a line break to many log readers
    ("\x1b[31mred\x9b0m", "\\x1b[31mred\\x9b0m"),  # terminal escapes, C0 and C1
    ("a\u2028b\tc\x00", "a\\u2028b\\tc\\x00"),
])
def test_what_is_not_printable_is_escaped(text, escaped):
    assert printable(text) == escaped


@pytest.mark.parametrize("text", ["GET /ws?symbols=AAPL%0d%0a (127.0.0.1)", "Zürich 株 ✓ \\n"])
def test_printable_text_is_left_alone(text):
    assert printable(text) is text


def test_the_filter_rewrites_the_finished_message_and_keeps_the_record():
    record = logging.LogRecord(
        "tornado.access", logging.WARNING, __file__, 1, "%d %s", (404, "GET /x\nFAKE"), None
    )
    assert OneLine().filter(record)
    assert record.getMessage() == "404 GET /x\\nFAKE"
