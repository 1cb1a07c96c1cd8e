"""Workflows as values: calls, steps, chains, groups and chords, typed end to end.

    wf = await chain(add.s(1, 2), mul.step(3), mul.step(4)).enqueue()    # Workflow[int]
    await wf.result()                                                     # 36
    await chord(group(add.s(1, 2), add.s(3, 4)), total.step()).enqueue()  # total([3, 7])
    await add.map([(1, 2), (3, 4)], concurrency=10).enqueue()             # [3, 7]

* ``task.s(*args)`` is a ``Call[R]``: a task call with all its arguments. ``task.step(*rest)``
  is a ``Step[A, R]``: its first argument (of type ``A``) is the result of what runs before it.
* ``chain(a, b, c)`` (or ``a | b | c``) runs each after the one before; a step is fed its
  result, a call (or group, chord) only waits for it. ``group(...)`` runs its members at once;
  its result is their results' list, in order. ``chord(group, step)`` feeds that list to one
  callback. ``task.map(arg_sets, concurrency=k)`` is a group of one call per argument tuple, at
  most ``k`` running at once.
* ``if_failed`` (chain, chord): "fail" (default) fails what waits for a node that failed for
  good (and cancels what waits for one cancelled); "continue" runs it anyway, fed the
  ``JobResult`` (a list of them after a group), failures included.

Everything is checked when built: arguments as ``enqueue`` checks them, a step's fed type
against the previous task's return annotation where both are plain classes (``TypeError``
naming both tasks), an empty group (``ValueError``). ``enqueue()`` stores every node in one
broker call (all or none), each a job with its task's options, a fresh id, the workflow's id and
what it waits for (``taskit.dependencies``); the broker releases each node in the same atomic
step as the end of the last node it waits for (docs/workflows.md).
"""

from __future__ import annotations

import inspect
import itertools
import types
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from taskit._canvas_build import (
    Builder,
    NodeSpec,
    Upstream,
    accepts,
    if_failed_of,
    type_label,
)
from taskit._workflow_handle import Workflow
from taskit.dependencies import IfFailed
from taskit.job import Job, JobResult
from taskit.producer import Producer

__all__ = [
    "Call",
    "Canvas",
    "Chain",
    "Chord",
    "Group",
    "Step",
    "Workflow",
    "chain",
    "chord",
    "group",
]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")
R_co = TypeVar("R_co", covariant=True)

#: "fail" or "continue" (or the ``IfFailed`` member).
Policy = Literal["fail", "continue"] | IfFailed


class _Fed:
    """Stands in for a step's fed first argument while its other arguments are bound."""

    def __repr__(self) -> str:
        return "<fed>"


#: The stand-in for a step's fed argument (``Task.step`` binds the rest after it).
FED: Any = _Fed()


def hints_of(fn: Callable[..., Any] | None) -> tuple[Any, Any]:
    """(return annotation, first positional parameter's annotation) of ``fn``, resolved;
    ``Any`` for each that is absent or cannot be resolved. A ``JobResult`` return counts as
    ``Any`` (its value is what the next step gets)."""
    if fn is None:
        return Any, Any
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
        params = list(inspect.signature(fn).parameters.values())
    except Exception:  # an undefined name, a builtin: nothing to check against
        return Any, Any
    returns = hints.get("return", Any)
    if returns is None:
        returns = type(None)
    elif returns is JobResult:
        returns = Any
    first = next((p for p in params if p.kind is not p.KEYWORD_ONLY), None)
    fed = Any if first is None or first.kind is first.VAR_KEYWORD else hints.get(first.name, Any)
    return returns, fed


def fed_parameter(task: str, signature: inspect.Signature) -> str:
    """The name of the parameter a step of ``task`` is fed: its first positional one.
    ``TypeError`` when it has none."""
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD, param.VAR_POSITIONAL):
            return param.name
        break
    raise TypeError(
        f"task {task!r} has no positional first parameter to feed the previous result into: "
        "use task.s(...) (a call that only waits) instead of task.step(...)"
    )


class Canvas(Generic[R_co]):
    """A workflow that can be enqueued alone: a call, chain, group or chord whose result is an
    ``R_co``. ``a | b`` is ``chain(a, b)``."""

    __slots__ = ()

    @property
    def _many(self) -> bool:
        """True when its result is a list of several nodes' results (a group, a chain ending
        in one)."""
        return False

    @property
    def _returns(self) -> Any:
        """The annotation of its result, for the check of a step fed by it."""
        raise NotImplementedError

    @property
    def _label(self) -> str:
        raise NotImplementedError

    @property
    def _producer(self) -> Producer:
        raise NotImplementedError

    def _place(self, builder: Builder, up: Upstream | None) -> tuple[str, ...]:
        """Add its jobs, its entry nodes waiting for ``up``; returns its exit nodes' ids."""
        raise NotImplementedError

    @overload
    def __or__(self: Canvas[A], other: Step[A, B]) -> Chain[B]: ...
    @overload
    def __or__(self, other: Canvas[B]) -> Chain[B]: ...
    def __or__(self, other: Step[Any, Any] | Canvas[Any]) -> Chain[Any]:
        if isinstance(self, Chain) and self.if_failed is IfFailed.FAIL:
            return _chained((*self.links, other), IfFailed.FAIL)  # a | b | c: one chain
        return _chained((self, other), IfFailed.FAIL)

    def jobs(self, workflow_id: str | None = None) -> list[Job]:
        """The jobs ``enqueue`` would store (a fresh workflow id unless given), in order."""
        return self._build(workflow_id).jobs

    async def enqueue(self) -> Workflow[R_co]:
        """Store every node in one broker call (all or none); the handle of the workflow."""
        builder = self._build(None)
        await self._producer.submit(builder.jobs)
        return self._handle(builder)

    def enqueue_sync(self) -> Workflow[R_co]:
        """``enqueue`` for code without an event loop."""
        builder = self._build(None)
        self._producer.submit_sync(builder.jobs)
        return self._handle(builder)

    def _build(self, workflow_id: str | None) -> Builder:
        builder = Builder(self._producer, workflow_id)
        builder.exits = self._place(builder, None)
        return builder

    def _handle(self, builder: Builder) -> Workflow[R_co]:
        return Workflow(builder.workflow, self._producer, results=builder.exits, many=self._many)


class Call(Canvas[R_co]):
    """A task call with all its arguments (``task.s(...)``)."""

    __slots__ = ("spec",)

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"<Call {self.spec.task!r}>"

    @property
    def _returns(self) -> Any:
        return self.spec.returns

    @property
    def _label(self) -> str:
        return f"task {self.spec.task!r}"

    @property
    def _producer(self) -> Producer:
        return self.spec.producer

    def _place(self, builder: Builder, up: Upstream | None) -> tuple[str, ...]:
        return (builder.add(self.spec, up, fed=False),)


class Step(Generic[A, R_co]):
    """A task call whose first argument is the result of what runs before it
    (``task.step(...)``): an ``A`` in, an ``R_co`` out. It cannot run alone."""

    __slots__ = ("spec",)

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"<Step {self.spec.task!r}>"

    @property
    def _returns(self) -> Any:
        return self.spec.returns

    @property
    def _label(self) -> str:
        return f"task {self.spec.task!r}"

    def _place(self, builder: Builder, up: Upstream | None) -> tuple[str, ...]:
        if up is None:  # only as a chain's first link, which chain() refuses
            raise TypeError(f"a step of {self._label} has nothing before it to feed it")
        return (builder.add(self.spec, up, fed=True),)


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
        return lambda *args, **kwargs: obj._call(args, kwargs)


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
        return lambda *args, **kwargs: obj._step(args, kwargs)


class Mapper(Protocol[R]):
    """``task.map``'s signature (see ``TaskVariant._map``)."""

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
        return obj._map


class Chain(Canvas[R_co]):
    """Links run one after another (``chain``)."""

    __slots__ = ("if_failed", "links")

    def __init__(self, links: tuple[Canvas[Any] | Step[Any, Any], ...], if_failed: IfFailed):
        self.links = links
        self.if_failed = if_failed

    def __repr__(self) -> str:
        return f"<Chain of {len(self.links)}>"

    @property
    def _many(self) -> bool:
        last = self.links[-1]
        return isinstance(last, Canvas) and last._many

    @property
    def _returns(self) -> Any:
        return self.links[-1]._returns

    @property
    def _label(self) -> str:
        return self.links[-1]._label

    @property
    def _producer(self) -> Producer:
        first = self.links[0]
        assert isinstance(first, Canvas)
        return first._producer

    def _place(self, builder: Builder, up: Upstream | None) -> tuple[str, ...]:
        exits = self.links[0]._place(builder, up)
        for before, link in itertools.pairwise(self.links):
            many = isinstance(before, Canvas) and before._many
            exits = link._place(builder, Upstream(exits, many, self.if_failed))
        return exits


class Group(Canvas[list[T]]):
    """Members run at once; the result is their results' list, in order (``group``,
    ``Task.map``). ``concurrency``: at most that many members running at once."""

    __slots__ = ("concurrency", "members")

    def __init__(self, members: tuple[Canvas[T], ...], *, concurrency: int | None = None):
        if not members:
            raise ValueError("a group needs at least one member (an empty group has no result)")
        for member in members:
            if not isinstance(member, Canvas):
                raise TypeError(_not_member(member))
            if member._many:
                raise TypeError(
                    f"a group member must give one result, but {member._label} gives a list "
                    "(a group, or a chain ending in one): list its members in this group, or "
                    "end it with a chord"
                )
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be an int >= 1 (or None), got {concurrency!r}")
        self.members = members
        self.concurrency = concurrency

    def __repr__(self) -> str:
        return f"<Group of {len(self.members)}>"

    @property
    def _many(self) -> bool:
        return True

    @property
    def _returns(self) -> Any:
        return types.GenericAlias(list, (self.members[0]._returns,))

    @property
    def _label(self) -> str:
        return f"a group of {len(self.members)} ({self.members[0]._label}...)"

    @property
    def _producer(self) -> Producer:
        return self.members[0]._producer

    def _place(self, builder: Builder, up: Upstream | None) -> tuple[str, ...]:
        k = self.concurrency
        if k is not None and up is not None and k < len(self.members):
            raise ValueError(
                "a group with a concurrency bound cannot wait for an earlier step (its window "
                "would run members whose step failed): put it first in the chain, or in a chord"
            )
        exits: list[str] = []
        for i, member in enumerate(self.members):
            window = (
                None if k is None or i < k else Upstream((exits[i - k],), False, IfFailed.CONTINUE)
            )
            exits += member._place(builder, up if window is None else window)
        return tuple(exits)


class Chord(Canvas[R_co]):
    """A group whose results' list feeds one callback (``chord``)."""

    __slots__ = ("callback", "header", "if_failed")

    def __init__(
        self, header: Group[Any], callback: Step[Any, Any] | Canvas[Any], if_failed: IfFailed
    ) -> None:
        self.header = header
        self.callback = callback
        self.if_failed = if_failed

    def __repr__(self) -> str:
        return f"<Chord of {len(self.header.members)} into {self.callback._label}>"

    @property
    def _returns(self) -> Any:
        return self.callback._returns

    @property
    def _label(self) -> str:
        return self.callback._label

    @property
    def _producer(self) -> Producer:
        return self.header._producer

    def _place(self, builder: Builder, up: Upstream | None) -> tuple[str, ...]:
        exits = self.header._place(builder, up)
        return self.callback._place(builder, Upstream(exits, True, self.if_failed))


def _check_feed(
    before: Canvas[Any] | Step[Any, Any], step: Step[Any, Any], policy: IfFailed
) -> None:
    """``TypeError`` naming both tasks when what ``before`` gives cannot be ``step``'s first
    argument: its result (a list after a group), or under CONTINUE its ``JobResult`` (a list of
    them). Checked only where both annotations are plain enough to compare."""
    many = getattr(before, "_many", False)
    if policy is IfFailed.CONTINUE:
        given: Any = types.GenericAlias(list, (JobResult,)) if many else JobResult
    else:
        given = before._returns
    wanted = step.spec.fed
    if not accepts(wanted, given):
        raise TypeError(
            f"{step._label} cannot be fed by {before._label}: its first parameter takes "
            f"{type_label(wanted)}, and it would get {type_label(given)}"
        )


def _not_member(value: object) -> str:
    if isinstance(value, Step):
        return (
            f"a step of {value._label} has nothing to feed it here: a group member (and a "
            "chain's first link) is a call, task.s(...)"
        )
    return f"expected a call, chain, group or chord (task.s(...)), got {type(value).__name__}"


def _link(value: object) -> Canvas[Any] | Step[Any, Any]:
    if not isinstance(value, Canvas | Step):
        raise TypeError(
            "a chain links calls, steps, groups and chords (task.s(...), task.step(...)), got "
            f"{type(value).__name__}"
        )
    return value


@overload
def chain(a: Canvas[A], /, *, if_failed: Literal["fail"] = "fail") -> Chain[A]: ...
@overload
def chain(
    a: Canvas[A], b: Step[A, B] | Canvas[B], /, *, if_failed: Literal["fail"] = "fail"
) -> Chain[B]: ...
@overload
def chain(
    a: Canvas[A],
    b: Step[A, B] | Canvas[B],
    c: Step[B, C] | Canvas[C],
    /,
    *,
    if_failed: Literal["fail"] = "fail",
) -> Chain[C]: ...
@overload
def chain(
    a: Canvas[A],
    b: Step[A, B] | Canvas[B],
    c: Step[B, C] | Canvas[C],
    d: Step[C, D] | Canvas[D],
    /,
    *,
    if_failed: Literal["fail"] = "fail",
) -> Chain[D]: ...
@overload
def chain(
    a: Canvas[A],
    b: Step[A, B] | Canvas[B],
    c: Step[B, C] | Canvas[C],
    d: Step[C, D] | Canvas[D],
    e: Step[D, E] | Canvas[E],
    /,
    *,
    if_failed: Literal["fail"] = "fail",
) -> Chain[E]: ...
@overload
def chain(
    a: Canvas[A],
    b: Step[A, B] | Canvas[B],
    c: Step[B, C] | Canvas[C],
    d: Step[C, D] | Canvas[D],
    e: Step[D, E] | Canvas[E],
    f: Step[E, F] | Canvas[F],
    /,
    *,
    if_failed: Literal["fail"] = "fail",
) -> Chain[F]: ...
@overload
def chain(
    a: Canvas[Any],
    b: Step[Any, Any] | Canvas[Any],
    c: Step[Any, Any] | Canvas[Any],
    d: Step[Any, Any] | Canvas[Any],
    e: Step[Any, Any] | Canvas[Any],
    f: Step[Any, Any] | Canvas[Any],
    g: Step[Any, Any] | Canvas[Any],
    /,
    *links: Step[Any, Any] | Canvas[Any],
    if_failed: Policy = "fail",
) -> Chain[Any]: ...
@overload
def chain(
    first: Canvas[Any],
    /,
    *links: Canvas[Any] | Step[Any, Any],
    if_failed: Literal["continue", IfFailed.CONTINUE],
) -> Chain[Any]: ...
def chain(*links: Canvas[Any] | Step[Any, Any], if_failed: Policy = "fail") -> Chain[Any]:
    """Run ``links`` one after another: a step is fed the result of the link before it, any
    other link waits for it. The chain's result is its last link's. Typed for up to six links
    (more, or ``if_failed="continue"``: checked when built, typed ``Any``). ``ValueError`` for
    no link or a bad ``if_failed``; ``TypeError`` for a first link that is a step, or a step
    whose fed type does not fit the result before it (naming both tasks)."""
    return _chained(links, if_failed_of(if_failed))


def _chained(links: tuple[object, ...], policy: IfFailed) -> Chain[Any]:
    if not links:
        raise ValueError("a chain needs at least one link")
    checked = tuple(_link(link) for link in links)
    if not isinstance(checked[0], Canvas):
        raise TypeError(_not_member(checked[0]))
    for before, link in itertools.pairwise(checked):
        if isinstance(link, Step):
            _check_feed(before, link, policy)
    return Chain(checked, policy)


def group(*members: Canvas[T], concurrency: int | None = None) -> Group[T]:
    """Run ``members`` at once; the result is their results' list, in order. ``concurrency``:
    at most that many running at once (member ``i`` waits for member ``i - concurrency`` to
    end, whatever its outcome). ``ValueError`` for no member or a ``concurrency`` below 1;
    ``TypeError`` for a member that is a step, or that gives a list (a group)."""
    return Group(members, concurrency=concurrency)


@overload
def chord(
    header: Group[A], callback: Step[list[A], B], *, if_failed: Literal["fail"] = "fail"
) -> Chord[B]: ...
@overload
def chord(
    header: Group[A], callback: Step[list[JobResult], B], *, if_failed: Literal["continue"]
) -> Chord[B]: ...
@overload
def chord(header: Group[A], callback: Canvas[B], *, if_failed: Policy = "fail") -> Chord[B]: ...
def chord(
    header: Group[Any], callback: Step[Any, Any] | Canvas[Any], *, if_failed: Policy = "fail"
) -> Chord[Any]:
    """Run the group ``header``, then ``callback`` fed the list of its results in order (a
    step; a call only waits for them). ``if_failed="continue"``: the callback runs even when
    members failed, fed their ``JobResult`` s. ``TypeError`` for a header that is not a group
    or a callback whose fed type does not fit the list."""
    policy = if_failed_of(if_failed)
    if not isinstance(header, Group):
        raise TypeError(f"a chord's header is a group (group(...)), got {type(header).__name__}")
    _link(callback)
    if isinstance(callback, Step):
        _check_feed(header, callback, policy)
    return Chord(header, callback, policy)
