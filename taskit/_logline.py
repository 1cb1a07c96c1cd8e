"""The CLI's text log line, and a direct path for the worker's line per job.

``TextFormatter`` writes ``time level logger: message [key=value ...]``, the extras (``job_id``,
``task``, ...) in the order given. The CLI puts it on a ``StreamHandler`` of the root logger.

A line through ``logging`` costs a worker 10-15 µs of CPU, most of it in making the
``LogRecord`` (process, thread and caller lookups no text line shows) and walking the loggers:
as much as the rest of a no-op job's path. ``LineBatch`` writes the same bytes without a
record, the lines of a batch (the worker's: a settle call's jobs) in one write, when nothing
could tell the difference: the logger and its parents reach exactly one handler,
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

__all__ = ["STANDARD", "LineBatch", "TextFormatter"]

#: Attributes of a log record that are not extras passed by taskit's loggers.
STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``time level logger: message`` followed by ``key=value`` for each extra (job_id, ...).

    A worker writes a line per job, so the time is cheap: its date and second are formatted once
    a second (``formatTime`` would call ``strftime`` for every line)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second: tuple[int, str] = (-1, "")  # one tuple: swapped whole, read whole

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created, int(record.msecs))

    def stamp(self, created: float, msecs: int) -> str:
        """``YYYY-mm-dd HH:MM:SS,mmm`` of ``created`` (seconds since the epoch)."""
        second = self._second  # formatted outside the handler's lock too (``LineBatch``)
        if second[0] != int(created):
            text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            second = self._second = (int(created), text)
        return f"{second[1]},{msecs:03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in record.__dict__.items() if k not in STANDARD]
        return f"{line} [{' '.join(extras)}]" if extras else line


class LineBatch:
    """Log lines of one ``logger`` written together: ``add`` each, then ``write`` them.

    A line the sole text handler shows as logging would (see the module's docstring) is
    formatted at once, with its own time, and held; ``write`` hands the held lines to the
    handler's stream in one call (one system call for a batch of jobs, not one a line). Any
    other line goes through ``logger.log`` at once, after the held ones, so their order holds
    (the caller of ``add`` is named as the record's origin). A line the stream fails to take is
    reported through the handler's ``handleError``, as ``StreamHandler`` does, never raised.
    Single thread (the worker's event loop); the handler's lock is taken to write."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._handler: logging.StreamHandler[TextIO] | None = None
        self._lines: list[str] = []
        self._held: list[tuple[int, str, tuple[object, ...]]] = []  # for handleError

    def add(self, level: int, msg: str, args: tuple[object, ...], extra: dict[str, object]) -> None:
        """Log ``msg % args`` with ``extra`` at ``level`` (the caller checked
        ``isEnabledFor``)."""
        logger = self._logger
        handler = _sole_text_handler(logger, level)
        if handler is None or (len(args) == 1 and isinstance(args[0], Mapping)):  # %(x)s style
            self.write()
            logger.log(level, msg, *args, extra=extra, stacklevel=2)
            return
        if handler is not self._handler:
            self.write()
            self._handler = handler
        created = time.time()
        msecs = int((created - int(created)) * 1000)  # as LogRecord computes it
        formatter: TextFormatter = handler.formatter  # type: ignore[assignment]  # checked
        try:
            extras = " ".join([f"{k}={v}" for k, v in extra.items()])
            line = (
                f"{formatter.stamp(created, msecs)} {logging.getLevelName(level)} {logger.name}: "
                f"{msg % args if args else msg}{f' [{extras}]' if extras else ''}"
            )
        except RecursionError:
            raise
        except Exception:  # as StreamHandler.emit: report it, never raise into the worker
            handler.handleError(logger.makeRecord(logger.name, level, "", 0, msg, args, None))
            return
        self._lines.append(line + handler.terminator)
        self._held.append((level, msg, args))

    def write(self) -> None:
        """Write the held lines, if any."""
        handler, lines, held = self._handler, self._lines, self._held
        if handler is None or not lines:
            return
        self._lines, self._held = [], []
        handler.acquire()
        try:
            handler.stream.write("".join(lines))
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            name = self._logger.name
            for level, msg, args in held:
                record = self._logger.makeRecord(name, level, "", 0, msg, args, None)
                handler.handleError(record)
        finally:
            handler.release()


def _sole_text_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[TextIO] | None:
    """The handler of ``LineBatch``'s direct path, or ``None`` if a record could look different
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
