"""The parts of a workflow as values (``taskit.canvas`` is their public face): ``Call``,
``Step``, ``Chain``, ``Group``, ``Chord``, each placing its jobs into a ``Builder``
(``taskit._canvas_build``), and the checks made when one is put together."""

from __future__ import annotations

import inspect
import itertools
import types
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from taskit._canvas_build import (
    Builder,
    NodeSpec,
    Upstream,
    accepts,
    type_label,
)
from taskit._workflow_handle import Workflow
from taskit.dependencies import IfFailed
from taskit.job import Job, JobResult
from taskit.producer import Producer

__all__ = [
    "FED",
    "Call",
    "Canvas",
    "Chain",
    "Chord",
    "Group",
    "Step",
    "chained",
    "check_feed",
    "checked_link",
    "fed_parameter",
    "hints_of",
]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
R_co = TypeVar("R_co", covariant=True)


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
            return chained((*self.links, other), IfFailed.FAIL)  # a | b | c: one chain
        return chained((self, other), IfFailed.FAIL)

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


def check_feed(
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


def checked_link(value: object) -> Canvas[Any] | Step[Any, Any]:
    """``value`` if it can be a chain's link; ``TypeError`` naming what it is otherwise."""
    if not isinstance(value, Canvas | Step):
        raise TypeError(
            "a chain links calls, steps, groups and chords (task.s(...), task.step(...)), got "
            f"{type(value).__name__}"
        )
    return value


def chained(links: tuple[object, ...], policy: IfFailed) -> Chain[Any]:
    """The chain of ``links`` (``taskit.canvas.chain``), checked: ``ValueError`` for none,
    ``TypeError`` for a first link that is a step or a step whose fed type does not fit."""
    if not links:
        raise ValueError("a chain needs at least one link")
    checked = tuple(checked_link(each) for each in links)
    if not isinstance(checked[0], Canvas):
        raise TypeError(_not_member(checked[0]))
    for before, link in itertools.pairwise(checked):
        if isinstance(link, Step):
            check_feed(before, link, policy)
    return Chain(checked, policy)
