"""Helpers of the browsing conformance tests (``test_conformance_browse*``): walks of a
listing, page checks, named jobs."""

from __future__ import annotations

import msgspec

from taskit.broker.base import Broker
from taskit.broker.browse import JobPage, Listing
from taskit.job import Job, Lease
from tests.broker._helpers import LONG, make_job

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


def full_pages(pages: list[JobPage], total: int, limit: int = PAGE) -> None:
    """Unfiltered, every page but the last is full, and the last ends the walk with the last
    job (an empty final page only for an empty listing)."""
    sizes = [len(page.jobs) for page in pages]
    expected = [limit] * (total // limit) + ([total % limit] if total % limit else [])
    assert sizes == (expected or [0])
    assert [page.cursor is None for page in pages] == [False] * (len(pages) - 1) + [True]


def named(queue: str, name: str, **fields: object) -> Job:
    return msgspec.structs.replace(make_job(queue, job_id=f"{queue}-{name}"), **fields)


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
