"""Helpers of the browsing conformance tests (``test_conformance_browse*``): walks of a
listing, page checks, named jobs.

A sharded broker keeps a listing's order within each shard's part of a walk: named jobs are all
of shard 0 (the home shard, where a job of a workflow or with limits lives too), so the tests
check each listing's order as one broker keeps it (across shards: test_conformance_shards.py).
"""

from __future__ import annotations

import msgspec

from taskit.broker.base import Broker
from taskit.broker.browse import JobPage, Listing
from taskit.broker.placement import HOME
from taskit.job import Job, Lease
from tests.broker._helpers import LONG, make_job
from tests.broker._sharded import shard_count, shard_name

PAGE = 3  # jobs a page in the walks: every seeded state spans several pages


async def walk(
    broker: Broker,
    queue: str,
    listing: Listing,
    *,
    limit: int = PAGE,
    task: str | None = None,
    text: str | None = None,
) -> list[JobPage]:
    """Every page of one walk, from the start until a page's cursor is None."""
    pages: list[JobPage] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = await broker.list_jobs(
            queue, listing, cursor=cursor, limit=limit, task=task, text=text
        )
        pages.append(page)
        if page.cursor is None:
            return pages
        cursor = page.cursor
    raise AssertionError("the walk never ended")


def listed(pages: list[JobPage]) -> list[str]:
    return [job.id for page in pages for job in page.jobs]


def full_pages(broker: Broker, pages: list[JobPage], total: int, limit: int = PAGE) -> None:
    """Unfiltered, every page but the last is full, and the last ends the walk with the last
    job (an empty final page only for an empty listing). A sharded broker's page may end a
    shard's part with a cursor when it is full (it does not ask the next shards ahead): there
    the walk may end with one more, empty, page."""
    sizes = [len(page.jobs) for page in pages]
    expected = [limit] * (total // limit) + ([total % limit] if total % limit else [])
    if shard_count(broker) > 1 and expected and sizes == [*expected, 0]:
        sizes = expected
    assert sizes == (expected or [0])
    assert [page.cursor is None for page in pages] == [False] * (len(pages) - 1) + [True]


def name_id(broker: Broker, queue: str, name: str) -> str:
    """The id of job ``name`` of ``queue``: ``"<queue>-<name>"``, with a tail on a sharded
    broker to put it in shard 0 (``shard_name``)."""
    return shard_name(broker, f"{queue}-{name}", shard=HOME)


def name_of(job_id: str, queue: str) -> str:
    """The name a job id of ``queue`` was made from (``name_id``)."""
    return job_id.removeprefix(f"{queue}-").partition("~")[0]


def named(broker: Broker, queue: str, name: str, **fields: object) -> Job:
    """Job ``name`` of ``queue`` (id: ``name_id``), with ``fields``."""
    made = make_job(queue, job_id=name_id(broker, queue, name))
    return msgspec.structs.replace(made, **fields)


async def take_each(broker: Broker, queue: str, count: int) -> dict[str, Lease]:
    held = await broker.reserve([queue], count=count, lease=LONG, timeout=0)
    assert len(held) == count
    return {lease.job.id: lease for lease in held}


async def walk_from(
    broker: Broker, queue: str, listing: Listing, cursor: str, **filters: str
) -> list[JobPage]:
    pages: list[JobPage] = []
    next_cursor: str | None = cursor
    while next_cursor is not None:
        page = await broker.list_jobs(queue, listing, cursor=next_cursor, **filters)
        pages.append(page)
        next_cursor = page.cursor
    return pages
