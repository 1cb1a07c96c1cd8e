"""A task's parameter types, resolved once: the checks enqueue runs and the conversions the
worker applies.

The rule, for every enqueue (``Task.enqueue``, ``schedule``, ``prepare``, ``app.enqueue``, the
``taskit enqueue`` command, periodic schedules): **the handler receives what was passed**, an
equal value of the same type all the way down, or nothing is enqueued and ``TypeError`` names the
argument, what its annotation expects and what it got. A value is checked by sending it through
the same trip a worker makes (msgpack, then ``msgspec.convert`` to the annotation) and comparing
what comes out with what went in. So a tuple passed into an unannotated (``Any``) parameter, which
would arrive as a list, is refused, and so are a ``Decimal``, a ``set``, an enum member or a naive
``datetime`` there; annotated ``tuple[int, int]``, ``set[int]``, ``Decimal``, ``datetime`` or
the enum class, each arrives as itself. The one conversion allowed: an ``int`` where the
annotation says ``float`` arrives as that ``float`` (equal value), as msgspec and PEP 484 have it.

Plain values (``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``) into a parameter
annotated with one of those types (or a union of them, or ``Any``) are checked by their exact type
alone, without the trip: the common call costs a set lookup per argument.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

import msgspec

from taskit.errors import SerializationError

__all__ = ["ArgumentTypes", "convert"]

_NONE = type(None)
#: Exact types that msgpack carries into an ``Any`` parameter unchanged.
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, _NONE, bytes})
#: Annotations checked by exact type alone: the types each accepts without the trip.
_SIMPLE: dict[Any, frozenset[type]] = {
    Any: _PLAIN,
    str: frozenset({str}),
    int: frozenset({int}),
    float: frozenset({float, int}),  # an int arrives as the float the annotation asks for
    bool: frozenset({bool}),
    bytes: frozenset({bytes}),
    None: frozenset({_NONE}),
    _NONE: frozenset({_NONE}),
}
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, msgspec.EncodeError)


def convert(name: str, value: Any, target: Any) -> Any:
    """``value`` (as msgpack decoded it) as the annotated type ``target``: what the worker does
    to every annotated argument. Raises ``msgspec.ValidationError`` naming the argument."""
    try:
        return msgspec.convert(value, target)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"argument {name!r}: {exc}") from None


class ArgCheck:
    """The enqueue check of one parameter (of one element, for ``*args`` and ``**kwargs``)."""

    __slots__ = ("allowed", "hint")

    def __init__(self, hint: Any) -> None:
        self.hint = hint
        self.allowed = _simple(hint)

    def __call__(self, label: str, value: Any) -> None:
        """Raise ``TypeError`` (message without the task name) if ``value`` would not reach the
        handler as itself."""
        if type(value) in self.allowed:
            return
        try:
            plain = msgspec.msgpack.decode(msgspec.msgpack.encode(value))
        except _ENCODE_ERRORS:
            return  # encode_arguments names the argument in a SerializationError
        expected = type_name(self.hint)
        if self.hint is Any:
            received = plain
        else:
            try:
                received = msgspec.convert(plain, self.hint)
            except msgspec.ValidationError as exc:
                detail = f" ({exc})" if "$" in str(exc) else ""
                raise TypeError(
                    f"argument {label} must be {expected}, got {_kind(value)}{detail}"
                ) from None
            except TypeError as exc:  # an annotation msgspec cannot convert to
                raise TypeError(f"argument {label}: annotation {expected}: {exc}") from None
        changed = difference(value, received)
        if changed is not None:
            raise TypeError(
                f"argument {label} (annotated {expected}) would not reach the handler as passed: "
                f"{changed} (pass the type the annotation names, or annotate the parameter with "
                "the type you pass)"
            )


class ArgumentTypes:
    """Every parameter's annotation, resolved once (``eval_str``) from the function.

    ``converters``: parameter name -> the type the worker converts it to (``Any`` ones left out;
    ``*args`` as ``tuple[T, ...]``, ``**kwargs`` as ``dict[str, T]``). ``checks``: parameter
    name -> its enqueue check; ``positional``: the checks of the positional parameters in order.
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
        self.converters: dict[str, Any] = {}
        self.checks: dict[str, ArgCheck] = {}
        self.kinds: dict[str, Any] = {}
        for param in sig.parameters.values():
            hint = hints.get(param.name, Any)
            self.checks[param.name] = ArgCheck(hint)
            self.kinds[param.name] = param.kind
            if hint is Any:
                continue
            if param.kind is param.VAR_POSITIONAL:
                hint = tuple[hint, ...]  # type: ignore[valid-type]
            elif param.kind is param.VAR_KEYWORD:
                hint = dict[str, hint]  # type: ignore[valid-type]
            self.converters[param.name] = hint
        self.positional = tuple(
            self.checks[p.name]
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )

    def check_positional(self, names: tuple[str, ...], args: tuple[Any, ...]) -> None:
        """Check a plain positional call (one argument per positional parameter)."""
        for check, name, value in zip(self.positional, names, args, strict=False):
            if type(value) not in check.allowed:
                self._run(check, repr(name), value)

    def check_bound(self, arguments: dict[str, Any]) -> None:
        """Check bound arguments (``BoundArguments.arguments``), element by element for
        ``*args`` and ``**kwargs``."""
        for name, value in arguments.items():
            check, kind = self.checks[name], self.kinds[name]
            if kind is inspect.Parameter.VAR_POSITIONAL:
                for i, item in enumerate(value):
                    self._run(check, f"{name!r}[{i}]", item)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                for key, item in value.items():
                    self._run(check, repr(key), item)
            else:
                self._run(check, repr(name), value)

    def _run(self, check: ArgCheck, label: str, value: Any) -> None:
        try:
            check(label, value)
        except TypeError as exc:
            raise TypeError(f"task {self.task_name!r}: {exc}") from None


def check_any(task_name: str, arguments: dict[str, Any]) -> None:
    """Check keyword values that reach their handler as plain msgpack types (a handler task's
    payload, read through ``job.kwargs``): each must arrive as passed."""
    check = ArgCheck(Any)
    for key, value in arguments.items():
        try:
            check(repr(key), value)
        except TypeError as exc:
            raise TypeError(f"task {task_name!r}: {exc}") from None


def difference(sent: Any, got: Any, path: str = "") -> str | None:
    """Where ``got`` (what the handler would receive) differs from ``sent`` in value or type,
    described for a person; ``None`` if it is equal all the way down with the same types (an
    ``int`` may have become an equal ``float``: only an annotation asks for that)."""
    ts, tg = type(sent), type(got)
    where = f" at {path}" if path else ""
    if ts is not tg:
        if ts is int and tg is float and sent == got:
            return None
        return f"{ts.__qualname__}{where} would arrive as {tg.__qualname__}"
    if isinstance(sent, list | tuple):
        if len(sent) != len(got):
            return f"{len(sent)} items{where} would arrive as {len(got)}"
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            found = difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(sent, dict):
        if len(sent) != len(got):
            return f"{len(sent)} keys{where} would arrive as {len(got)}"
        for (ka, va), (kb, vb) in zip(sent.items(), got.items(), strict=True):
            found = difference(ka, kb, f"{path} (a key)") or difference(va, vb, f"{path}[{ka!r}]")
            if found:
                return found
        return None
    if isinstance(sent, set | frozenset):
        if {_typed(x) for x in sent} != {_typed(x) for x in got}:
            return f"the members of the {ts.__qualname__}{where} would change"
        return None
    fields = _fields(sent)
    if fields is not None:
        for name in fields:
            found = difference(getattr(sent, name), getattr(got, name), f"{path}.{name}")
            if found:
                return found
        return None
    return _scalar_difference(sent, got, where)


def _scalar_difference(sent: Any, got: Any, where: str) -> str | None:
    try:
        same = sent == got or (sent != sent and got != got)  # NaN equals NaN here
        offset = getattr(sent, "utcoffset", None)
        if same and offset is not None and offset() != got.utcoffset():
            return f"{sent!r}{where} would arrive in UTC ({got!r}): pass it in UTC"
    except Exception:  # a comparison that raises (a signalling NaN) counts as a difference
        same = False
    return None if same else f"{sent!r}{where} would arrive as {got!r}"


def _typed(value: Any) -> Any:
    """A hashable stand-in for a set member that also tells ``1``, ``1.0`` and ``True`` apart."""
    if isinstance(value, frozenset):
        return type(value), frozenset(_typed(x) for x in value)
    if isinstance(value, tuple):
        return type(value), tuple(_typed(x) for x in value)
    return type(value), value


def _fields(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, msgspec.Struct):
        return value.__struct_fields__
    if dataclasses.is_dataclass(value):
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
        if all(p is not None for p in parts):
            return frozenset().union(*(p for p in parts if p is not None))
    return frozenset()


def type_name(hint: Any) -> str:
    """``int``, ``list[int]``, ``Any``: an annotation as a person writes it."""
    if isinstance(hint, type) and not get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__qualname__} {text if len(text) <= 40 else text[:37] + '...'}"
