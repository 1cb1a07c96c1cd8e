"""Fairness groups: the key a job's queue serves in turns (``Job.group``; docs: flow control,
"Fair queues").

A task's ``fair_by`` names the argument whose value is the group, or is a function called with
the bound arguments as keywords that returns it. A group is text of 1 to ``MAX_GROUP``
characters without NUL (the brokers store it in members joined by NUL); an int is written as its
decimal text. Both brokers refuse a bad group at enqueue with the same error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from taskit.job import Job

__all__ = ["MAX_GROUP", "check_group", "check_groups", "group_of"]

#: The longest group, in characters.
MAX_GROUP = 200


def check_group(group: object) -> str:
    """``group`` if it is a valid group (see the module docstring); ``TypeError`` or
    ``ValueError`` naming the problem otherwise."""
    if not isinstance(group, str):
        raise TypeError(f"a job's group must be a string, got {type(group).__name__}")
    if not group or len(group) > MAX_GROUP or "\0" in group:
        raise ValueError(
            f"a job's group must be 1 to {MAX_GROUP} characters without NUL, got "
            f"{group[:40]!r}{'...' if len(group) > 40 else ''} ({len(group)} characters)"
        )
    return group


def check_groups(jobs: Sequence[Job]) -> None:
    """``check_group`` for each job of a batch that has a group (a broker's enqueue, before it
    stores any)."""
    for job in jobs:
        if job.group is not None:
            check_group(job.group)


def group_of(
    fair_by: str | Callable[..., str | int],
    signature: inspect.Signature | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:
    """The group of a call with ``args``/``kwargs`` of a function of ``signature`` (``None``: a
    task not registered here, whose arguments can only be bound by keyword). ``TypeError`` or
    ``ValueError`` naming the problem: a missing argument, a value that is not a str or int, a
    bad group."""
    if signature is not None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        named = dict(bound.arguments)
    elif args:
        raise TypeError(
            "fair_by needs the arguments by name: pass them as keywords to a task not "
            "registered in this process"
        )
    else:
        named = kwargs
    if isinstance(fair_by, str):
        if fair_by not in named:
            raise TypeError(f"fair_by names argument {fair_by!r}, which the call does not have")
        value = named[fair_by]
    else:
        value = fair_by(**named)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif not isinstance(value, str):
        raise TypeError(f"fair_by must give a str or an int, got {type(value).__name__}")
    return check_group(value)
