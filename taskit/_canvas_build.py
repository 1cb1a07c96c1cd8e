"""Turning a canvas (``taskit.canvas``) into the jobs of one workflow, and the checks made
when it is built.

Each node becomes a job prepared with its task's options, with a fresh id (unless the call gave
one), the workflow's id and, when it waits for others, an ``After``: a chain's step waits for
the link before it and is fed its result (ONE; ALL after a group), any other link waits only
(NONE); a chord's callback waits for every member (ALL); a bounded group's member ``i`` waits
for member ``i - k`` (NONE, CONTINUE: a sliding window in which siblings' failures do not fail
each other).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

import msgspec

from taskit.dependencies import After, Feed, IfFailed
from taskit.job import Job, new_job_id
from taskit.producer import Producer

__all__ = ["Builder", "NodeSpec", "Upstream", "accepts", "if_failed_of", "type_label"]


@dataclass(frozen=True, eq=False, slots=True)
class NodeSpec:
    """What a node takes from its task: the prepared job (a step's without its fed first
    argument), the producer that stores it, whether its id was given (``options(job_id=)``),
    and the task's return and first-parameter annotations (``Any`` when unknown)."""

    task: str
    producer: Producer
    job: Job
    fixed_id: bool
    returns: Any
    fed: Any


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the entry nodes of a part wait for: ``ids``; ``many``: they are a group's exits (a
    step is then fed their list); ``if_failed``: the policy of the edge."""

    ids: tuple[str, ...]
    many: bool
    if_failed: IfFailed


class Builder:
    """Collects a workflow's jobs as its parts place them (``Canvas._place``)."""

    def __init__(self, producer: Producer, workflow_id: str | None) -> None:
        self.producer = producer
        self.workflow = workflow_id if workflow_id is not None else new_job_id()
        self.jobs: list[Job] = []
        #: The ids of the nodes whose results are the workflow's (set once placed).
        self.exits: tuple[str, ...] = ()
        self._ids: set[str] = set()

    def add(self, spec: NodeSpec, up: Upstream | None, *, fed: bool) -> str:
        """Add a node of ``spec``; ``fed``: a step, whose first argument is ``up``'s result."""
        if spec.producer.broker is not self.producer.broker:
            raise ValueError(
                f"task {spec.task!r} stores its jobs through another broker than the "
                "workflow's first node: a workflow lives in one broker"
            )
        job_id = spec.job.id if spec.fixed_id else new_job_id()
        if job_id in self._ids:
            raise ValueError(f"job id {job_id!r} (options(job_id=...)) is used twice here")
        self._ids.add(job_id)
        after = None
        if up is not None:
            feed = Feed.NONE if not fed else Feed.ALL if up.many else Feed.ONE
            after = After(up.ids, feed, up.if_failed)
        job = msgspec.structs.replace(spec.job, id=job_id, workflow=self.workflow, after=after)
        self.jobs.append(job)
        return job_id


def if_failed_of(value: object) -> IfFailed:
    """``"fail"`` / ``"continue"`` (or an ``IfFailed``) as an ``IfFailed``; ``ValueError``
    naming the value otherwise."""
    try:
        return IfFailed(value) if isinstance(value, str) else IfFailed(str(value))
    except ValueError:
        raise ValueError(f"if_failed must be 'fail' or 'continue', got {value!r}") from None


_UNIONS = (Union, types.UnionType)


def accepts(wanted: Any, given: Any) -> bool:
    """Whether a value of type ``given`` fits a parameter annotated ``wanted``; ``True`` when
    either cannot be judged (``Any``, a type variable, an annotation this does not model)."""
    if wanted is Any or given is Any or wanted is object:
        return True
    if get_origin(wanted) in _UNIONS:
        return any(accepts(w, given) for w in get_args(wanted))
    if get_origin(given) in _UNIONS:
        return all(accepts(wanted, g) for g in get_args(given))
    w_origin, g_origin = get_origin(wanted), get_origin(given)
    w_class = w_origin if w_origin is not None else wanted
    g_class = g_origin if g_origin is not None else given
    if not isinstance(w_class, type) or not isinstance(g_class, type):
        return True  # a Literal, a NewType, a TypeVar...: not judged here
    if not (issubclass(g_class, w_class) or (w_class is float and g_class is int)):
        return False
    w_args, g_args = get_args(wanted), get_args(given)
    if w_origin is not None and g_origin is list and len(w_args) == len(g_args) == 1:
        return accepts(w_args[0], g_args[0])
    return True


def type_label(hint: Any) -> str:
    """An annotation as written (``int``, ``list[JobResult]``)."""
    args = get_args(hint)
    origin = get_origin(hint)
    if origin in _UNIONS:
        return " | ".join(type_label(a) for a in args)
    if origin is not None and args:
        return f"{type_label(origin)}[{', '.join(type_label(a) for a in args)}]"
    if hint is type(None):
        return "None"
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")
