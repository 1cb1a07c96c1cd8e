"""What a broker may store of an outcome: each one checked on its own before it joins a batch.

A settle call carries many outcomes. If one of them held something that cannot be stored (a
result value msgpack cannot carry, an error that is an object rather than text), encoding the
call as a whole would fail, and with it every other job in the batch: they would stay leased,
be reclaimed and run again. So every outcome is checked, and its result encoded, alone:
``storable`` returns one a broker can store, replacing what cannot be stored by a failure of
that job alone that names the problem. Both brokers call it per outcome in ``settle``; the
worker's executor checks a handler's result the same way first (``check_result``), so its logs,
events and hooks already see the failure.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from taskit.config import MAX_SECONDS
from taskit.errors import SerializationError
from taskit.job import JobResult, Outcome, OutcomeKind, describe_error, storable_text

__all__ = ["check_result", "refused", "storable"]

_ENCODER = msgspec.msgpack.Encoder()
_RESULT = msgspec.msgpack.Decoder(JobResult)
# RecursionError: a value that contains itself (a list holding itself).
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)
#: The kinds whose result a broker keeps (the others end without one, or run again).
_KEEPS_RESULT = (OutcomeKind.COMPLETE, OutcomeKind.FAIL)
_TEXT = ("error", "error_type", "traceback")
_Failure = TypeVar("_Failure", JobResult, Outcome)
_DELAYS = (float, int)


def check_result(result: JobResult) -> tuple[JobResult, bytes]:
    """``result`` as it will be read back, and its stored bytes.

    An exception as ``error`` is described (``describe_error``), lone surrogates in the error
    fields are escaped; the bytes are proven to decode back as a ``JobResult`` (a ``msgspec.Raw``
    value that is not msgpack would encode, then break every later read). Raises
    ``SerializationError`` naming the problem: the value's type, or the field of a wrong type.
    """
    result = _as_text(result)
    try:
        data = _ENCODER.encode(result)
        return _RESULT.decode(data), data
    except (*_ENCODE_ERRORS, msgspec.DecodeError) as exc:
        raise SerializationError(_why_not(result, exc)) from exc


def storable(outcome: Outcome) -> tuple[Outcome, bytes] | None:
    """``outcome`` as a broker may store it, and its result's bytes (``b""``: none to keep).

    Error fields become text as in ``check_result``; ones that are neither text nor an exception
    are replaced by a description of the problem. A result that cannot be stored makes the
    outcome a FAIL of that job alone whose error says why. The result returned is a copy that
    shares nothing with the caller's objects. ``None``: the outcome names no lease (a job id or
    token that is not text, a kind or delay that is not one), so a broker answers it as stale.
    """
    if not _names_a_lease(outcome):
        return None
    if not _no_error(outcome):  # the common case, a success, skips every check of the fields
        outcome = _as_text(outcome)
        bad = [
            f"{f} ({type(getattr(outcome, f)).__name__})" for f in _TEXT if not _is_text(outcome, f)
        ]
        if bad:
            outcome = _failed(outcome, f"{', '.join(bad)} must be text", outcome.kind)
    if outcome.kind not in _KEEPS_RESULT or outcome.result is None:
        return msgspec.structs.replace(outcome, result=None), b""
    given: Any = outcome.result
    if not isinstance(given, JobResult):  # nothing else has a JobResult's fields
        why = f"its result must be a JobResult, got {type(given).__name__}"
        outcome = _failed(msgspec.structs.replace(outcome, result=None), why, OutcomeKind.FAIL)
    try:
        result, data = check_result(outcome.result or JobResult(success=False))
    except SerializationError as exc:
        outcome = _failed(outcome, f"its result {exc}", OutcomeKind.FAIL)
        result, data = check_result(outcome.result or JobResult(success=False))
    return msgspec.structs.replace(outcome, result=result), data


def _names_a_lease(outcome: Outcome) -> bool:
    delay: Any = outcome.delay
    return (
        isinstance(outcome.job_id, str)
        and isinstance(outcome.token, str)
        and isinstance(outcome.kind, OutcomeKind)
        and isinstance(delay, _DELAYS)
        and delay is not True
        and delay is not False
        and delay == delay  # not NaN
        and _is_ttl(outcome.result_ttl)
    )


def _is_ttl(ttl: Any) -> bool:
    """None (the broker's TTL) or seconds from 0 to ten years (NaN fails)."""
    if ttl is None:
        return True
    return isinstance(ttl, _DELAYS) and not isinstance(ttl, bool) and 0 <= ttl <= MAX_SECONDS


def _no_error(item: JobResult | Outcome) -> bool:
    return item.error is None and item.error_type is None and item.traceback is None


def _is_text(item: JobResult | Outcome, field: str) -> bool:
    return isinstance(getattr(item, field), str | None)


def _as_text(item: _Failure) -> _Failure:
    """``item`` with an exception as its ``error`` described (type and traceback filled in
    where missing) and lone surrogates in its error fields escaped."""
    if _no_error(item):
        return item
    error: Any = item.error
    changes: dict[str, Any] = {}
    if isinstance(error, BaseException):
        message, error_type, trace = describe_error(error)
        changes = {
            "error": message,
            "error_type": item.error_type or error_type,
            "traceback": item.traceback or trace,
        }
    for field in _TEXT:
        text = changes.get(field, getattr(item, field))
        if isinstance(text, str) and storable_text(text) is not text:
            changes[field] = storable_text(text)
    return msgspec.structs.replace(item, **changes) if changes else item


def _failed(outcome: Outcome, why: str, kind: OutcomeKind) -> Outcome:
    """``outcome`` with its error replaced by ``why`` it cannot be stored. A FAIL gets a result
    saying so; another kind keeps its own (a COMPLETE with a bad error field still completes)."""
    message = f"outcome of job {outcome.job_id} cannot be stored: {why}"
    error_type = SerializationError.__name__
    result = outcome.result
    if kind is OutcomeKind.FAIL:
        result = JobResult(success=False, error=message, error_type=error_type)
    return msgspec.structs.replace(
        outcome, kind=kind, error=message, error_type=error_type, traceback=None, result=result
    )


def _why_not(result: JobResult, exc: Exception) -> str:
    """The first part of ``result`` that cannot be stored, and why."""
    try:
        _ENCODER.encode(result.value)
    except _ENCODE_ERRORS as inner:
        return f"value of type {type(result.value).__name__} is not serializable ({inner})"
    if not isinstance(result.success, bool):
        return f"field 'success' must be a bool, got {type(result.success).__name__}"
    for field in _TEXT:
        if not _is_text(result, field):
            return f"field {field!r} must be text, got {type(getattr(result, field)).__name__}"
    duration: Any = result.duration
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float)
    ):
        return f"field 'duration' must be seconds, got {type(duration).__name__}"
    return f"is not serializable: {exc}"


def refused(outcome: Outcome, why: str) -> Outcome:
    """``outcome`` replaced by a FAIL of its job that says the broker refused to store it, and
    ``why``: settled in its place, the job ends with a clear error instead of running again."""
    return _failed(outcome, f"the broker refused it: {why}", OutcomeKind.FAIL)
