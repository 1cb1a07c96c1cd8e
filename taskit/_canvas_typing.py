"""The typed makers behind ``Task.s``, ``Task.step`` and ``Task.map``: descriptors whose
``__get__`` reads the task's parameters and result from its type (``_Typed``), so a type
checker checks ``task.s(...)`` like a call of the function, ``task.step(...)`` like a call
without its first parameter (which it takes as the fed type), and unwraps an ``async def``'s
coroutine to what it returns. At run time each hands the call to ``taskit._canvas_calls``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from taskit._canvas_calls import call_of, map_of, step_of
from taskit._canvas_nodes import Call, Group, Step

__all__ = ["CallMaker", "MapMaker", "Mapper", "StepMaker"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
A = TypeVar("A")
R_co = TypeVar("R_co", covariant=True)


class _Typed(Protocol[P, R_co]):
    """A task (or its variant) as a type checker sees it: parameters ``P``, result ``R_co``
    (a coroutine's for an ``async def``)."""

    def _typed(self) -> Callable[P, R_co]: ...


class CallMaker:
    """``task.s``: typed as the task's parameters, giving a ``Call`` of its (awaited) result."""

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> CallMaker: ...
    @overload
    def __get__(
        self, obj: _Typed[P, Coroutine[Any, Any, R]], owner: type[Any]
    ) -> Callable[P, Call[R]]: ...
    @overload
    def __get__(self, obj: _Typed[P, R], owner: type[Any]) -> Callable[P, Call[R]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return lambda *args, **kwargs: call_of(obj, args, kwargs)


class StepMaker:
    """``task.step``: typed as the task's parameters after the first, so a type checker checks
    the bound arguments and the fed type (``Step[A, R]``)."""

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> StepMaker: ...
    @overload
    def __get__(
        self, obj: _Typed[Concatenate[A, Q], Coroutine[Any, Any, R]], owner: type[Any]
    ) -> Callable[Q, Step[A, R]]: ...
    @overload
    def __get__(
        self, obj: _Typed[Concatenate[A, Q], R], owner: type[Any]
    ) -> Callable[Q, Step[A, R]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return lambda *args, **kwargs: step_of(obj, args, kwargs)


class Mapper(Protocol[R]):
    """``task.map``'s signature (see ``taskit._canvas_calls.map_of``)."""

    def __call__(
        self, arg_sets: Iterable[Sequence[Any]], *, concurrency: int | None = None
    ) -> Group[R]: ...


class MapMaker:
    """``task.map``: a ``Group`` of the task's (awaited) result."""

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> MapMaker: ...
    @overload
    def __get__(self, obj: _Typed[..., Coroutine[Any, Any, R]], owner: type[Any]) -> Mapper[R]: ...
    @overload
    def __get__(self, obj: _Typed[..., R], owner: type[Any]) -> Mapper[R]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return functools.partial(map_of, obj)
