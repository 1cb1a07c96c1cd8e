"""The worker's direct log line: the same bytes as the logging path, and that path whenever any
handler, filter or formatter of the user's could see a difference."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from taskit._logline import LineBatch, TextFormatter
from taskit.cli import _JsonFormatter

MSG = "job %s (%s) %s in %.3f s"
ARGS = ("j1", "demo.task", "complete", 0.000123)


def _extra() -> dict[str, object]:
    return {"job_id": "j1", "task": "demo.task", "queue": "default", "attempt": 1, "duration": 1e-4}


def _text_logger(name: str) -> logging.Logger:
    """A logger of its own with one text handler on a buffer, not propagating. Made inside the
    test: pytest attaches its capture handlers to non-propagating loggers that exist when a
    test starts (which would take the logging path, as any second handler does)."""
    log = logging.getLogger(f"taskit.test_logline.{name}")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(TextFormatter())
    log.handlers[:] = [handler]
    log.filters.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _log(
    logger: logging.Logger, level: int, msg: str, args: tuple[object, ...], extra: dict[str, object]
) -> None:
    """One line through a ``LineBatch`` of its own."""
    lines = LineBatch(logger)
    lines.add(level, msg, args, extra)
    lines.write()


def _text(log: logging.Logger) -> list[str]:
    [text] = [h for h in log.handlers if isinstance(h.formatter, TextFormatter | _JsonFormatter)]
    return str(text.stream.getvalue()).splitlines()  # type: ignore[attr-defined]


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_direct_line_is_the_line_logging_writes() -> None:
    logger = _text_logger("test_the_direct_line_is_the_line_logging_writes")
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    logger.info(MSG, *ARGS, extra=_extra())
    direct, logged = _text(logger)
    stamp = len("2026-12-01 08:00:00,000")
    assert direct[stamp:] == logged[stamp:]
    assert direct[stamp:] == (
        f" INFO {logger.name}: job j1 (demo.task) complete in 0.000 s "
        "[job_id=j1 task=demo.task queue=default attempt=1 duration=0.0001]"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", direct[:stamp])


def test_a_second_handler_gets_every_record_with_its_extras() -> None:
    logger = _text_logger("test_a_second_handler_gets_every_record_with_its_extras")
    recorder = _Recorder()
    logger.addHandler(recorder)
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    [record] = recorder.records
    assert record.getMessage() == "job j1 (demo.task) complete in 0.000 s"
    assert (record.job_id, record.queue, record.duration) == ("j1", "default", 1e-4)  # type: ignore[attr-defined]
    assert record.funcName == "_log"  # the caller of ``add``
    assert len(_text(logger)) == 1  # the text handler still wrote its line, once


def test_a_parents_handler_counts_too() -> None:
    logger = _text_logger("test_a_parents_handler_counts_too")
    recorder = _Recorder()
    parent = logger.parent
    assert parent is not None
    logger.propagate = True
    parent.addHandler(recorder)
    try:
        _log(logger, logging.INFO, MSG, ARGS, _extra())
    finally:
        parent.removeHandler(recorder)
    assert [r.getMessage() for r in recorder.records] == ["job j1 (demo.task) complete in 0.000 s"]


def test_a_filter_on_the_logger_still_filters() -> None:
    logger = _text_logger("test_a_filter_on_the_logger_still_filters")
    logger.addFilter(lambda record: record.job_id != "j1")  # type: ignore[attr-defined]
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    assert _text(logger) == []


def test_a_filter_on_the_handler_still_filters() -> None:
    logger = _text_logger("test_a_filter_on_the_handler_still_filters")
    logger.handlers[0].addFilter(lambda record: False)
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    assert _text(logger) == []


def test_the_handlers_level_still_holds() -> None:
    logger = _text_logger("test_the_handlers_level_still_holds")
    logger.handlers[0].setLevel(logging.WARNING)
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    assert _text(logger) == []


def test_another_formatter_formats_the_record() -> None:
    logger = _text_logger("test_another_formatter_formats_the_record")
    logger.handlers[0].setFormatter(_JsonFormatter())
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    [line] = _text(logger)
    data = json.loads(line)
    assert data["message"] == "job j1 (demo.task) complete in 0.000 s"
    assert (data["job_id"], data["attempt"], data["level"]) == ("j1", 1, "INFO")


def test_a_record_factory_of_the_users_is_used() -> None:
    logger = _text_logger("test_a_record_factory_of_the_users_is_used")
    made: list[str] = []
    default = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = default(*args, **kwargs)
        made.append(record.getMessage())
        return record

    logging.setLogRecordFactory(factory)
    try:
        _log(logger, logging.INFO, MSG, ARGS, _extra())
    finally:
        logging.setLogRecordFactory(default)
    assert made == ["job j1 (demo.task) complete in 0.000 s"]
    assert len(_text(logger)) == 1


def test_no_arguments_leave_the_message_unformatted() -> None:
    logger = _text_logger("test_no_arguments_leave_the_message_unformatted")
    _log(logger, logging.INFO, "100% done", (), {})
    logger.info("100% done")
    direct, logged = _text(logger)
    assert direct.endswith(" INFO " + logger.name + ": 100% done")
    assert direct[23:] == logged[23:]


def test_a_broken_stream_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = _text_logger("test_a_broken_stream_is_reported_not_raised")
    handler = logger.handlers[0]
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append)
    handler.stream.close()  # type: ignore[attr-defined]
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    assert [r.getMessage() for r in reported] == ["job j1 (demo.task) complete in 0.000 s"]


def test_the_sole_text_handler_gets_its_line_without_a_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = _text_logger("test_the_sole_text_handler_gets_its_line_without_a_record")

    def no_record(*args: object, **kwargs: object) -> logging.LogRecord:
        raise AssertionError("a LogRecord was made")

    monkeypatch.setattr(logger, "makeRecord", no_record)
    _log(logger, logging.INFO, MSG, ARGS, _extra())
    [line] = _text(logger)
    assert line.endswith("complete in 0.000 s [job_id=j1 task=demo.task queue=default attempt=1 "
                         "duration=0.0001]")  # fmt: skip


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_a_batch_is_held_then_written_at_once() -> None:
    logger = _text_logger("test_a_batch_is_held_then_written_at_once")
    stream = _CountingStream()
    logger.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    lines = LineBatch(logger)
    for n in range(3):
        lines.add(logging.INFO, "job %d done", (n,), {"job_id": f"j{n}"})
    assert stream.getvalue() == ""
    lines.write()
    lines.write()  # nothing held: nothing written
    assert stream.writes == 1
    assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] == [
        "job 0 done [job_id=j0]", "job 1 done [job_id=j1]", "job 2 done [job_id=j2]",
    ]  # fmt: skip


def test_a_line_through_logging_comes_after_the_held_ones() -> None:
    logger = _text_logger("test_a_line_through_logging_comes_after_the_held_ones")
    lines = LineBatch(logger)
    lines.add(logging.INFO, "first", (), {})
    seen: list[list[str]] = []

    class Peek(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(_text(logger))

    logger.handlers.insert(0, Peek())  # sees the stream before the text handler writes
    lines.add(logging.INFO, "second", (), {})
    lines.write()
    assert [[line.rsplit(": ", 1)[1] for line in text] for text in seen] == [["first"]]
    assert [line.rsplit(": ", 1)[1] for line in _text(logger)] == ["first", "second"]
