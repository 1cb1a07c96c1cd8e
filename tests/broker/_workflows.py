"""Helpers of the workflow conformance tests: nodes, settling by job id, a broker with a short
result TTL (for workflow expiry), and the texts every broker must give a failed dependent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from taskit.broker.base import Broker
from taskit.broker.placement import HOME
from taskit.dependencies import After, Feed, IfFailed
from taskit.job import Job, JobResult, JobStatus, Lease, OutcomeKind, result_of
from taskit.workflow import WorkflowNode, WorkflowState
from tests.broker._helpers import LONG, make_job, outcome
from tests.broker._sharded import shard_name
from tests.broker.conftest import BrokerHarness, open_harness


def node(
    queue: str,
    name: str,
    workflow: str | None,
    *after: str,
    feed: Feed = Feed.NONE,
    if_failed: IfFailed = IfFailed.FAIL,
    **fields: Any,
) -> Job:
    """Job ``<queue>-<name>`` of ``workflow``, waiting for the jobs ``after`` names (none: it
    waits for nothing); ``fields`` replace others (result_ttl, scheduled_at...)."""
    job = make_job(queue, job_id=f"{queue}-{name}")
    waits = After(jobs=tuple(after), feed=feed, if_failed=if_failed) if after else None
    return msgspec.structs.replace(job, workflow=workflow, after=waits, **fields)


def plain_node(broker: Broker, queue: str, name: str) -> Job:
    """Job ``<queue>-<name>`` of no workflow; on a sharded broker of the home shard (its id with
    a tail: ``shard_name``), where a new workflow lives, so a workflow adopting it, or the same
    id enqueued with a workflow, meets it in one shard as on one broker."""
    job = node(queue, name, None)
    return msgspec.structs.replace(job, id=shard_name(broker, job.id, shard=HOME))


async def take(broker: Broker, queue: str, count: int = 10) -> dict[str, Lease]:
    """Reserve what is ready on ``queue`` (up to ``count``); the leases by job id."""
    held = await broker.reserve([queue], count=count, lease=LONG, timeout=0)
    return {lease.job.id: lease for lease in held}


async def finish(
    broker: Broker, lease: Lease, kind: OutcomeKind = OutcomeKind.COMPLETE, **fields: Any
) -> None:
    """Settle ``lease`` with ``kind`` (COMPLETE: with a result whose value is the job id, unless
    given) and check it applied."""
    if kind is OutcomeKind.COMPLETE and "result" not in fields:
        fields["result"] = JobResult(success=True, value=lease.job.id)
    assert await broker.settle([outcome(lease, kind, **fields)]) == [True]


async def run(broker: Broker, queue: str, job_id: str, **fields: Any) -> Lease:
    """Reserve ``queue``'s ready jobs, settle job ``job_id`` as ``finish`` does, and hand the
    others back (RELEASE); the settled lease."""
    held = await take(broker, queue)
    assert job_id in held, f"{job_id} is not ready; ready: {sorted(held)}"
    mine = held.pop(job_id)
    await finish(broker, mine, **fields)
    if held:
        others = [outcome(lease, OutcomeKind.RELEASE) for lease in held.values()]
        assert await broker.settle(others) == [True] * len(others)
    return mine


async def status(broker: Broker, job_id: str) -> JobStatus | None:
    job = await broker.get(job_id)
    return None if job is None else job.status


async def flow(broker: Broker, workflow_id: str) -> WorkflowState:
    state = await broker.workflow(workflow_id)
    assert state is not None, f"workflow {workflow_id} is unknown"
    return state


def statuses(state: WorkflowState) -> dict[str, JobStatus]:
    return {n.id: n.status for n in state.nodes}


def the_node(state: WorkflowState, job_id: str) -> WorkflowNode:
    found = state.node(job_id)
    assert found is not None, f"{job_id} is no node of {state.id}"
    return found


async def ended_as_its_job(broker: Broker, state: WorkflowState, job_id: str) -> Job:
    """Check that node ``job_id``'s result is ``result_of`` its job (whose record is kept);
    the job."""
    job = await broker.get(job_id)
    assert job is not None
    assert job.status.finished
    assert the_node(state, job_id).status is job.status
    assert the_node(state, job_id).result == result_of(job)
    return job


def waited(parent: str, parent_status: JobStatus, error: str | None) -> str:
    """The error of a job ended by parent ``parent``'s failure (spec: exact texts). A job
    ended because its parent was itself ended by a failed dependency carries that parent's
    error unchanged instead: it names the failure that started the cascade, and the text does
    not grow down a long chain."""
    text = f"waited for job {parent}, which ended {parent_status.value}"
    return text if error is None else f"{text}: {error}"


CANCELLED_TEXT = "job was cancelled"


@asynccontextmanager
async def short_lived(
    harness: BrokerHarness, request: pytest.FixtureRequest, result_ttl: float
) -> AsyncIterator[tuple[Broker, Callable[[float], Awaitable[None]]]]:
    """A second broker of the harness's kind whose result TTL is ``result_ttl`` seconds, and
    its way to let time pass."""
    async with open_harness(harness.kind, request, result_ttl=result_ttl) as made:
        yield made.broker, made.advance


def ids(jobs: Sequence[Job]) -> list[str]:
    return [job.id for job in jobs]
