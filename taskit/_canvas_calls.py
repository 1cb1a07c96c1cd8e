"""How a task call becomes a workflow node (``task.s``, ``task.step``, ``task.map``, through the
typed makers of ``taskit._canvas_typing``): its job prepared as ``enqueue`` prepares one, every
option of the task and the call applied, and what a workflow checks it against (the task's
return and first-parameter annotations)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from taskit._arguments import ArgumentTypes
from taskit._canvas_build import NodeSpec
from taskit._canvas_nodes import FED, Call, Group, Step, fed_parameter
from taskit.errors import SerializationError
from taskit.job import Job
from taskit.options import CallOptions, TaskOptions
from taskit.producer import Producer

__all__ = ["call_of", "map_of", "step_of"]


class _Task(Protocol):
    """What a node needs of a task (``taskit.task.Task``)."""

    @property
    def name(self) -> str: ...
    @property
    def opts(self) -> TaskOptions: ...
    @property
    def producer(self) -> Producer: ...
    @property
    def fn(self) -> Callable[..., Any] | None: ...
    @property
    def signature(self) -> inspect.Signature | None: ...
    def argument_types(self) -> ArgumentTypes: ...
    def hints(self) -> tuple[Any, Any]: ...


class _Variant(Protocol):
    """What a node needs of a task with its per-call options (``taskit.task.TaskVariant``)."""

    @property
    def task(self) -> _Task: ...
    @property
    def overrides(self) -> CallOptions: ...
    def checked_job(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job: ...
    def job_of(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], keyed: tuple[Any, ...] | None = None
    ) -> Job: ...


def call_of(variant: _Variant, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call[Any]:
    """``task.s(*args, **kwargs)``: checked as ``enqueue`` checks its arguments."""
    return Call(_node(variant, variant.checked_job(args, kwargs)))


def step_of(variant: _Variant, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Step[Any, Any]:
    """``task.step(*args, **kwargs)``: ``args``/``kwargs`` bound and checked after a fed first
    argument. ``TypeError`` for a task with no positional first parameter, arguments that do
    not bind or fit, or a fairness, dedup or limit key read from the fed argument."""
    task, overrides = variant.task, variant.overrides
    validate = task.opts.validate if overrides.validate is None else overrides.validate
    if task.signature is not None:
        fed = fed_parameter(task.name, task.signature)
        try:
            bound = task.signature.bind(FED, *args, **kwargs).arguments
        except TypeError as exc:
            raise TypeError(f"task {task.name!r}: step(): {exc}") from None
        del bound[fed]
        if validate and task.fn is not None:
            task.argument_types().check_bound(bound)
    try:
        job = variant.job_of(args, kwargs, keyed=(FED, *args))
    except (TypeError, ValueError, SerializationError) as exc:  # a key of the fed value
        raise TypeError(
            f"task {task.name!r}: step(): {exc} (a step's fair_by, dedup and limit keys "
            "cannot come from its fed argument, unknown until it runs: use a call, task.s(...))"
        ) from None
    return Step(_node(variant, job))


def map_of(
    variant: _Variant, arg_sets: Iterable[Sequence[Any]], *, concurrency: int | None = None
) -> Group[Any]:
    """``task.map(arg_sets, concurrency=None)``: a group of one call per argument tuple, each
    checked as ``s`` checks it; ``concurrency``: at most that many running at once (member
    ``i`` waits for member ``i - concurrency`` to end, whatever its outcome). ``ValueError``
    for no argument set or a ``concurrency`` below 1; ``TypeError`` for an argument set that is
    not a tuple or list, or does not fit the task."""
    calls: list[Call[Any]] = []
    for arg_set in arg_sets:
        if not isinstance(arg_set, tuple | list):
            raise TypeError(
                f"task {variant.task.name!r}: map() takes argument tuples; each must be a tuple "
                f"or list, got {type(arg_set).__name__}"
            )
        calls.append(call_of(variant, tuple(arg_set), {}))
    return Group(tuple(calls), concurrency=concurrency)


def _node(variant: _Variant, job: Job) -> NodeSpec:
    task = variant.task
    if job.dedup is not None:
        raise ValueError(
            f"task {task.name!r} has a dedup window, so it cannot be a workflow node: a job "
            "kept in its place by the window would not be a node of the workflow"
        )
    returns, fed = task.hints()
    fixed_id = variant.overrides.job_id is not None
    return NodeSpec(task.name, task.producer, job, fixed_id, returns, fed)
