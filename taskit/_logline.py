"""The CLI's text log line, and a direct path for the worker's line per job.

``TextFormatter`` writes ``time level logger: message [key=value ...]``, the extras (``job_id``,
``task``, ...) in the order given. The CLI puts it on a ``StreamHandler`` of the root logger.

A line through ``logging`` costs a worker 10-15 µs of CPU, most of it in making the
``LogRecord`` (process, thread and caller lookups no text line shows) and walking the loggers:
as much as the rest of a no-op job's path. ``log_line`` writes the same bytes without a record
when nothing could tell the difference: the logger and its parents reach exactly one handler,
a ``StreamHandler`` with a ``TextFormatter`` and no filters, the logger has no filters, and no
record factory or logger class of the user's is in place. Anything else (a second handler,
pytest's ``caplog``, a filter, the JSON formatter, ``logging.disable``) goes through
``Logger.log`` as before, so every user handler still sees every record with its extras.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TextIO

__all__ = ["STANDARD", "TextFormatter", "log_line"]

#: Attributes of a log record that are not extras passed by taskit's loggers.
STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``time level logger: message`` followed by ``key=value`` for each extra (job_id, ...).

    A worker writes a line per job, so the time is cheap: its date and second are formatted once
    a second (``formatTime`` would call ``strftime`` for every line)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created, int(record.msecs))

    def stamp(self, created: float, msecs: int) -> str:
        """``YYYY-mm-dd HH:MM:SS,mmm`` of ``created`` (seconds since the epoch)."""
        second = int(created)
        if second != self._second:  # handlers format under their lock: one thread at a time
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            self._second = second
        return f"{self._stamp},{msecs:03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in record.__dict__.items() if k not in STANDARD]
        return f"{line} [{' '.join(extras)}]" if extras else line


def log_line(
    logger: logging.Logger, level: int, msg: str, args: tuple[object, ...], extra: dict[str, object]
) -> None:
    """Log ``msg % args`` with ``extra`` at ``level`` (the caller checked ``isEnabledFor``):
    written straight to the one text handler when that shows the same line, else through
    ``logger.log`` (the caller is named as the record's origin)."""
    handler = _sole_text_handler(logger, level)
    if handler is None or (len(args) == 1 and isinstance(args[0], Mapping)):  # %(name)s style
        logger.log(level, msg, *args, extra=extra, stacklevel=2)
        return
    created = time.time()
    msecs = int((created - int(created)) * 1000)  # as LogRecord computes it
    formatter: TextFormatter = handler.formatter  # type: ignore[assignment]  # checked
    extras = " ".join([f"{k}={v}" for k, v in extra.items()])
    handler.acquire()
    try:
        line = (
            f"{formatter.stamp(created, msecs)} {logging.getLevelName(level)} {logger.name}: "
            f"{msg % args if args else msg}{f' [{extras}]' if extras else ''}"
        )
        handler.stream.write(line + handler.terminator)
        handler.flush()
    except RecursionError:
        raise
    except Exception:  # as StreamHandler.emit: report it, never raise into the worker
        handler.handleError(logger.makeRecord(logger.name, level, "", 0, msg, args, None))
    finally:
        handler.release()


def _sole_text_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[TextIO] | None:
    """The handler of ``log_line``'s direct path, or ``None`` if a record could look different
    to anyone (see the module's docstring)."""
    if (
        logger.filters
        or logger.disabled
        or type(logger) is not logging.Logger
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:  # as Logger.callHandlers walks them
        for handler in node.handlers:
            if found is not None:
                return None
            found = handler
        node = node.parent if node.propagate else None
    if (
        type(found) is not logging.StreamHandler
        or type(found.formatter) is not TextFormatter
        or found.filters
        or level < found.level
    ):
        return None
    return found
