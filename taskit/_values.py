"""How values become msgpack and text for the job wire format: a job's arguments (its payload),
any value, a failure as storable text, and epoch seconds as a datetime. Re-exported by
``taskit.job``, the public home of these names.
"""

from __future__ import annotations

import traceback as _traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from taskit.errors import SerializationError

__all__ = [
    "MAX_TRACEBACK",
    "decode_arguments",
    "describe_error",
    "encode_arguments",
    "encode_value",
    "storable_text",
    "utc_from_timestamp",
]

#: Tracebacks kept on a job or result are cut to their last this-many characters.
MAX_TRACEBACK = 16_000

_ENCODER = msgspec.msgpack.Encoder()
_ARGS_DECODER = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]])


def utc_from_timestamp(seconds: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """How taskit stores a failure: ``(error, error_type, traceback)``, all text.

    ``error`` is ``str(error)``, or the type's name when that is empty; ``error_type`` the type's
    qualified name (``__qualname__``: ``ValueError``, ``Client.Declined``); ``traceback`` the
    formatted traceback (``traceback.format_exception``: only the last line for an exception
    that was never raised), cut to its last ``MAX_TRACEBACK`` characters. Lone surrogates, which
    msgpack cannot carry, are escaped (``\\udc80``). The same three fields are kept on ``Job``,
    ``JobResult`` and ``Outcome``, whether the handler raised the exception or returned it.
    """
    name = type(error).__name__
    try:  # a user's exception is any code: its __str__ may raise, or return a non-string
        message = str(error) or name
    except Exception as exc:
        message = f"<{name}: str() raised {type(exc).__name__}>"
    try:
        trace = "".join(_traceback.format_exception(error))[-MAX_TRACEBACK:]
    except Exception as exc:  # pragma: no cover - traceback guards str() itself
        trace = f"<traceback of {name} could not be formatted: {type(exc).__name__}>"
    return storable_text(message), storable_text(type(error).__qualname__), storable_text(trace)


def storable_text(text: str) -> str:
    """``text`` as msgpack can carry it: lone surrogates escaped, anything else unchanged."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def encode_value(value: Any) -> bytes:
    """msgpack-encode ``value``; raises ``SerializationError`` naming its type."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
        raise SerializationError(  # RecursionError: a value that contains itself
            f"cannot encode a value of type {type(value).__name__}: {exc}"
        ) from exc


def encode_arguments(
    args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str] = ()
) -> msgspec.Raw:
    """Encode ``[args, kwargs]`` as a job payload.

    ``names`` are the parameter names of the positional arguments, used only to name the culprit
    when a value cannot be encoded: the ``SerializationError`` says which argument and why.
    """
    try:
        return msgspec.Raw(_ENCODER.encode((args, kwargs)))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        labelled = [
            (f"argument {names[i]!r}" if i < len(names) else f"positional argument {i}", value)
            for i, value in enumerate(args)
        ]
        labelled += [(f"argument {key!r}", value) for key, value in kwargs.items()]
        for label, value in labelled:
            try:
                _ENCODER.encode(value)
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as inner:
                raise SerializationError(
                    f"{label} cannot be serialized (type {type(value).__name__}): {inner}"
                ) from inner
        raise SerializationError(f"arguments cannot be serialized: {exc}") from exc


def decode_arguments(payload: msgspec.Raw) -> tuple[list[Any], dict[str, Any]]:
    """Decode a job payload into plain ``(args, kwargs)``; ``SerializationError`` if malformed."""
    try:
        return _ARGS_DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"job payload does not decode as [args, kwargs]: {exc}") from exc
