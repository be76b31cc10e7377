"""Every record the server logs during a test, and the ones a hostile client must never cause."""

from __future__ import annotations

import logging
from types import TracebackType

#: The server's loggers: Tornado's (``tornado.access`` and the rest) and the project's own.
SERVER_LOGGERS = ("tornado", "dashboard", "feeds")


class LogRecorder(logging.Handler):
    """``with LogRecorder() as logs:`` records the server's loggers at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogRecorder:
        for name in SERVER_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self)
        return self

    def __exit__(
        self, typ: type[BaseException] | None, value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(level)

    def problems(self) -> list[str]:
        """Errors, tracebacks above debug level (Tornado logs a malformed handshake's at
        debug), and messages that are not one line of printable text: a forged line."""
        return [
            f"{r.levelname} {r.name}: {r.getMessage()!r}" + (" (traceback)" if r.exc_info else "")
            for r in self.records
            if r.levelno >= logging.ERROR or (r.exc_info and r.levelno > logging.DEBUG)
            or not r.getMessage().isprintable()
        ]
