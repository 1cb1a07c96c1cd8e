"""A task's parameter types, resolved once: the checks enqueue runs and the conversions the
worker applies.

The rule, for every enqueue (``Task.enqueue``, ``schedule``, ``prepare``, ``app.enqueue``, the
``taskit enqueue`` command, periodic schedules): **the handler receives what was passed**, an
equal value of the same type all the way down, or nothing is enqueued and ``TypeError`` names the
argument, what its annotation expects and what it got. A value is checked by sending it through
the trip a worker makes (``Arrival``: msgpack, then msgspec's decoder for the annotation, built
once per parameter) and comparing what comes out with what went in. The worker converts a job's
arguments with the same ``Arrival``, and so does ``taskit enqueue`` with its JSON values.

So a tuple passed into an unannotated (``Any``) parameter, which would arrive as a list, is
refused, and so are a ``Decimal``, a ``set``, an enum member or a naive ``datetime`` there;
annotated ``tuple[int, int]``, ``set[int]``, ``Decimal``, ``datetime`` or the enum class, each
arrives as itself. The one conversion allowed: an ``int`` where the annotation says ``float``
arrives as that ``float`` (equal value, so only if the float is exact), as msgspec and PEP 484
have it.

Plain values (``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``) into a parameter
annotated with one of those types (or a union of them, or ``Any``) are checked by their exact type
alone, without the trip: the common call costs a set lookup per argument.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Union, get_args, get_origin
from uuid import UUID

import msgspec

from taskit.errors import SerializationError

__all__ = ["ArgCheck", "ArgumentTypes", "Arrival", "check_any", "difference"]

_NONE = type(None)
#: Exact types that msgpack carries into an ``Any`` parameter unchanged.
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, _NONE, bytes})
#: Annotations checked by exact type alone: the types each accepts without the trip.
_SIMPLE: dict[Any, frozenset[type]] = {
    Any: _PLAIN,
    str: frozenset({str}),
    int: frozenset({int}),
    # not int: an int arrives as the float the annotation asks for only if that float is exact
    # (2**53 + 1 is not), which the trip checks
    float: frozenset({float}),
    bool: frozenset({bool}),
    bytes: frozenset({bytes}),
    None: frozenset({_NONE}),
    _NONE: frozenset({_NONE}),
}
#: Types compared as a whole (no fields to walk): checked by ``==`` and, if aware, UTC offset.
_LEAVES: frozenset[type] = frozenset({datetime, date, time, timedelta, Decimal, UUID})
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, msgspec.EncodeError)
_ENCODER = msgspec.msgpack.Encoder()


class Arrival:
    """What a value of one parameter becomes in the handler: msgpack-encoded, then decoded by
    msgspec's decoder for the annotation (built on first use: an annotation msgspec does not
    support fails only the calls that pass that parameter)."""

    __slots__ = ("_decoder", "hint")

    def __init__(self, hint: Any) -> None:
        self.hint = hint
        self._decoder: msgspec.msgpack.Decoder[Any] | None = None

    def __call__(self, value: Any) -> Any:
        """Raises ``msgspec.ValidationError`` if the value does not fit, ``TypeError`` if the
        annotation is not one msgspec supports, ``SerializationError`` if the value cannot be
        encoded (an int past 64 bits from JSON)."""
        try:
            data = _ENCODER.encode(value)
        except _ENCODE_ERRORS as exc:
            raise SerializationError(f"cannot be encoded: {exc}") from None
        return self.decode(data)

    def decode(self, data: bytes) -> Any:
        """The decoding half of the trip."""
        decoder = self._decoder
        if decoder is None:
            try:
                decoder = self._decoder = msgspec.msgpack.Decoder(self.hint)
            except TypeError as exc:
                raise TypeError(f"annotation {type_name(self.hint)}: {exc}") from None
        return decoder.decode(data)

    def named(self, name: str, value: Any, *, from_json: bool = False) -> Any:
        """``self(value)``; an error names the argument. ``from_json``: ``value`` came from
        JSON (``taskit enqueue``), so it is converted as msgspec converts builtins (a base64
        string for ``bytes``, an ISO string for a ``datetime``), not taken through msgpack."""
        try:
            return msgspec.convert(value, self.hint) if from_json else self(value)
        except msgspec.ValidationError as exc:
            raise msgspec.ValidationError(f"argument {name!r}: {exc}") from None
        except SerializationError as exc:
            raise SerializationError(f"argument {name!r} {exc}") from None


class ArgCheck:
    """The enqueue check of one parameter (of one element, for ``*args`` and ``**kwargs``)."""

    __slots__ = ("allowed", "arrival", "hint")

    def __init__(self, hint: Any, arrival: Arrival | None = None) -> None:
        self.hint = hint
        self.allowed = _simple(hint)
        self.arrival = arrival or Arrival(hint)

    def __call__(self, name: str, value: Any, index: object = None) -> None:
        """Raise ``TypeError`` (message without the task name) if ``value``, passed for
        parameter ``name`` (item ``index`` of it, for ``*args``), would not reach the handler as
        itself."""
        if type(value) in self.allowed:
            return
        try:
            data = _ENCODER.encode(value)
        except _ENCODE_ERRORS:
            return  # encode_arguments names the argument in a SerializationError
        try:
            received = self.arrival.decode(data)
        except TypeError as exc:  # an annotation msgspec cannot decode: no value fits it
            raise TypeError(f"argument {_label(name, index)}: {exc}") from None
        except msgspec.ValidationError as exc:
            detail = f" ({exc})" if "$" in str(exc) else ""
            raise TypeError(
                f"argument {_label(name, index)} must be {type_name(self.hint)}, "
                f"got {_kind(value)}{detail}"
            ) from None
        changed = difference(value, received)
        if changed is not None:
            label, expected = _label(name, index), type_name(self.hint)
            raise TypeError(
                f"argument {label} (annotated {expected}) would not reach the handler as passed: "
                f"{changed} (pass the type the annotation names, or annotate the parameter with "
                "the type you pass)"
            )


class ArgumentTypes:
    """Every parameter's annotation, resolved once (``eval_str``) from the function.

    ``arrivals``: parameter name -> how the worker converts it (``Any`` ones left out: msgpack
    gives them as they arrive; ``*args`` as ``tuple[T, ...]``, ``**kwargs`` as ``dict[str, T]``).
    ``checks``: parameter name -> its enqueue check; ``positional``: the checks of the positional
    parameters in order.
    Raises ``SerializationError`` if an annotation names something undefined.
    """

    def __init__(self, task_name: str, fn: Callable[..., Any], sig: inspect.Signature) -> None:
        try:
            hints = inspect.get_annotations(fn, eval_str=True)
        except Exception as exc:  # an annotation that names something undefined
            raise SerializationError(
                f"task {task_name!r}: cannot resolve parameter annotations: {exc}"
            ) from exc
        self.task_name = task_name
        self.arrivals: dict[str, Arrival] = {}
        self.checks: dict[str, ArgCheck] = {}
        self.kinds: dict[str, Any] = {}
        for param in sig.parameters.values():
            hint = hints.get(param.name, Any)
            check = self.checks[param.name] = ArgCheck(hint)
            self.kinds[param.name] = param.kind
            if hint is Any:
                continue
            if param.kind is param.VAR_POSITIONAL:
                self.arrivals[param.name] = Arrival(tuple[hint, ...])  # type: ignore[valid-type]
            elif param.kind is param.VAR_KEYWORD:
                self.arrivals[param.name] = Arrival(dict[str, hint])  # type: ignore[valid-type]
            else:
                self.arrivals[param.name] = check.arrival
        self.positional = tuple(
            self.checks[p.name]
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        self._allowed = tuple(check.allowed for check in self.positional)

    def check_positional(self, names: tuple[str, ...], args: tuple[Any, ...]) -> None:
        """Check a plain positional call (one argument per positional parameter)."""
        allowed = self._allowed
        for i, value in enumerate(args):  # not zip(..., strict=False): its keyword costs more
            if type(value) not in allowed[i]:
                break
        else:
            return  # the common call: plain values, plain annotations
        for check, name, value in zip(self.positional, names, args, strict=False):
            self._run(check, name, value)

    def check_bound(self, arguments: dict[str, Any]) -> None:
        """Check bound arguments (``BoundArguments.arguments``), element by element for
        ``*args`` and ``**kwargs``."""
        for name, value in arguments.items():
            check, kind = self.checks[name], self.kinds[name]
            if kind is inspect.Parameter.VAR_POSITIONAL:
                for i, item in enumerate(value):
                    self._run(check, name, item, i)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                for key, item in value.items():
                    self._run(check, key, item)
            else:
                self._run(check, name, value)

    def _run(self, check: ArgCheck, name: str, value: Any, index: object = None) -> None:
        try:
            check(name, value, index)
        except TypeError as exc:
            raise TypeError(f"task {self.task_name!r}: {exc}") from None


def check_any(task_name: str, arguments: dict[str, Any]) -> None:
    """Check keyword values that reach their handler as plain msgpack types (a handler task's
    payload, read through ``job.kwargs``): each must arrive as passed."""
    check = ArgCheck(Any)
    for key, value in arguments.items():
        try:
            check(key, value)
        except TypeError as exc:
            raise TypeError(f"task {task_name!r}: {exc}") from None


def difference(sent: Any, got: Any) -> str | None:
    """Where ``got`` (what the handler would receive) differs from ``sent`` in value or type,
    described for a person; ``None`` if it is equal all the way down with the same types (an
    ``int`` may have become an equal ``float``: only an annotation asks for that)."""
    found = _diff(sent, got)
    if found is None:
        return None
    path, reason = found
    return reason.replace("{at}", f" at {path}" if path else "")


def _diff(sent: Any, got: Any) -> tuple[str, str] | None:
    """``(path, reason)`` of the first difference (``{at}`` in the reason stands for the path)."""
    ts, tg = type(sent), type(got)
    if ts is not tg:
        if ts is int and tg is float:
            return None if sent == got else ("", f"{sent!r}{{at}} would arrive as {got!r}")
        return "", f"{ts.__qualname__}{{at}} would arrive as {tg.__qualname__}"
    if ts in _PLAIN:
        if sent == got or (sent != sent and got != got):  # NaN is NaN here
            return None
        return "", f"{sent!r}{{at}} would arrive as {got!r}"
    if ts is list or ts is tuple or isinstance(sent, tuple):
        return _diff_items(sent, got)
    if ts is dict:
        return _diff_dict(sent, got)
    if ts is set or ts is frozenset:
        return _diff_set(sent, got)
    if ts in _LEAVES:
        return _scalar_diff(sent, got)
    fields = _fields(sent)
    if fields is not None:
        for name in fields:
            found = _diff(getattr(sent, name), getattr(got, name))
            if found:
                return f".{name}{found[0]}", found[1]
        return None
    return _scalar_diff(sent, got)


def _diff_items(sent: list[Any] | tuple[Any, ...], got: Any) -> tuple[str, str] | None:
    if len(sent) != len(got):
        return "", f"{len(sent)} items{{at}} would arrive as {len(got)}"
    for i, (a, b) in enumerate(zip(sent, got, strict=True)):
        if type(a) is type(b) and type(a) in _PLAIN and a == b:
            continue  # the common item, without a call
        found = _diff(a, b)
        if found:
            return f"[{i}]{found[0]}", found[1]
    return None


def _diff_dict(sent: dict[Any, Any], got: Any) -> tuple[str, str] | None:
    if len(sent) != len(got):
        return "", f"{len(sent)} keys{{at}} would arrive as {len(got)}"
    for (ka, va), (kb, vb) in zip(sent.items(), got.items(), strict=True):
        found = _diff(ka, kb)
        if found:
            return f" (key {ka!r})", found[1]
        if type(va) is type(vb) and type(va) in _PLAIN and va == vb:
            continue
        found = _diff(va, vb)
        if found:
            return f"[{ka!r}]{found[0]}", found[1]
    return None


def _diff_set(sent: set[Any] | frozenset[Any], got: Any) -> tuple[str, str] | None:
    kinds = set(map(type, sent))
    if len(kinds) == 1 and kinds == set(map(type, got)) and kinds <= _PLAIN and sent == got:
        return None  # one plain type throughout: equal sets have equal members
    if sent != got or {_typed(x) for x in sent} != {_typed(x) for x in got}:
        return "", f"the members of the {type(sent).__qualname__}{{at}} would change"
    return None


def _scalar_diff(sent: Any, got: Any) -> tuple[str, str] | None:
    try:
        same = sent == got or (sent != sent and got != got)  # NaN is NaN here
        offset = getattr(sent, "utcoffset", None)
        if same and offset is not None and offset() != got.utcoffset():
            return "", f"{sent!r}{{at}} would arrive in UTC ({got!r}): pass it in UTC"
    except Exception:  # a comparison that raises (a signalling NaN) counts as a difference
        same = False
    return None if same else ("", f"{sent!r}{{at}} would arrive as {got!r}")


def _typed(value: Any) -> Any:
    """A hashable stand-in for a set member that also tells ``1``, ``1.0`` and ``True`` apart."""
    if isinstance(value, frozenset):
        return type(value), frozenset(_typed(x) for x in value)
    if isinstance(value, tuple):
        return type(value), tuple(_typed(x) for x in value)
    return type(value), value


def _fields(value: Any) -> tuple[str, ...] | None:
    kind = type(value)
    struct: tuple[str, ...] | None = getattr(kind, "__struct_fields__", None)
    if struct is not None:
        return struct
    if hasattr(kind, "__dataclass_fields__"):
        return tuple(f.name for f in dataclasses.fields(value))
    return None


def _simple(hint: Any) -> frozenset[type]:
    """The exact types ``hint`` takes without the trip (empty: always take the trip)."""
    try:
        if hint in _SIMPLE:
            return _SIMPLE[hint]
    except TypeError:  # an unhashable annotation (Annotated with unhashable metadata)
        return frozenset()
    if get_origin(hint) in (Union, types.UnionType):
        parts = [_SIMPLE.get(arg) for arg in get_args(hint)]
        if all(p is not None for p in parts) and _decodable(hint):
            return frozenset().union(*(p for p in parts if p is not None))
    return frozenset()


def _decodable(hint: Any) -> bool:
    """Whether msgspec can decode ``hint`` (``str | bytes`` it cannot): a union it cannot decode
    would fail every job at the worker, so its values take the trip, which says so at enqueue."""
    try:
        msgspec.msgpack.Decoder(hint)
    except TypeError:
        return False
    return True


def type_name(hint: Any) -> str:
    """``int``, ``list[int]``, ``Any``: an annotation as a person writes it."""
    if isinstance(hint, type) and not get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _label(name: str, index: object) -> str:
    return repr(name) if index is None else f"{name!r}[{index}]"


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__qualname__} {text if len(text) <= 40 else text[:37] + '...'}"
