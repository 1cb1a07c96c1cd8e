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

from typing import Any, Literal, TypeVar, overload

from taskit._canvas_build import if_failed_of
from taskit._canvas_nodes import (
    Call,
    Canvas,
    Chain,
    Chord,
    Group,
    Step,
    chained,
    check_feed,
    checked_link,
)
from taskit._workflow_handle import Workflow
from taskit.dependencies import IfFailed
from taskit.job import JobResult

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

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")

#: "fail" or "continue" (or the ``IfFailed`` member).
Policy = Literal["fail", "continue"] | IfFailed


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
    return chained(links, if_failed_of(if_failed))


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
    checked_link(callback)
    if isinstance(callback, Step):
        check_feed(header, callback, policy)
    return Chord(header, callback, policy)
