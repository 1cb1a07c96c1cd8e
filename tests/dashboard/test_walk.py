"""The walk of a listing across queues: name order, each queue to its end, exactly once, with a
cursor carrying the queue and the broker's cursor."""

from __future__ import annotations

import anyio
import pytest

from taskit import App, MemoryBroker, Settings
from taskit.broker.browse import Listing
from taskit.dashboard import views


async def seeded(per_queue: dict[str, int]) -> tuple[App, dict[str, list[str]]]:
    app = App(MemoryBroker(), settings=Settings())

    @app.task(name="echo")
    async def echo(n: int) -> int:
        return n

    made: dict[str, list[str]] = {}
    for queue, n in per_queue.items():
        for i in range(n):
            job = await echo.options(queue=queue).enqueue(i)
            made.setdefault(queue, []).append(job.id)
    return app, made


def test_a_cursor_round_trips_and_garbage_is_refused() -> None:
    for inner in (None, "abc", "0-1:é"):
        assert views.decode_cursor(views.encode_cursor("q/1", inner)) == ("q/1", inner)
    for bad in ("", "@@@", views.encode_cursor("q", None)[:-3] + "x", "WzEsMl0"):
        with pytest.raises(ValueError, match="bad cursor"):
            views.decode_cursor(bad)


def test_the_walk_takes_queues_in_name_order_each_to_its_end() -> None:
    async def go() -> None:
        app, made = await seeded({"b": 4, "a": 3, "c": 2})
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            jobs, cursor = await views.walk(
                app.broker, ["c", "a", "b"], Listing.QUEUED, cursor=cursor, limit=4
            )
            seen += [j.id for j in jobs]
            pages += 1
            if cursor is None:
                break
        assert seen == made["a"] + made["b"] + made["c"]
        assert pages == 3

    anyio.run(go)


def test_a_queue_gone_from_the_list_is_skipped() -> None:
    async def go() -> None:
        app, made = await seeded({"a": 2, "b": 2, "c": 2})
        jobs, cursor = await views.walk(app.broker, ["a", "b", "c"], Listing.QUEUED, limit=3)
        assert [j.id for j in jobs] == made["a"] + made["b"][:1]
        assert cursor is not None
        rest, end = await views.walk(app.broker, ["a", "c"], Listing.QUEUED, cursor=cursor)
        assert ([j.id for j in rest], end) == (made["c"], None)

    anyio.run(go)


def test_a_filtered_walk_makes_a_bounded_number_of_calls() -> None:
    async def go() -> None:
        queues = {f"q{i:02}": 1 for i in range(views.MAX_CALLS + 3)}
        app, _ = await seeded(queues)
        jobs, cursor = await views.walk(
            app.broker, list(queues), Listing.QUEUED, task="no-such-task"
        )
        assert jobs == []
        assert cursor is not None
        assert views.decode_cursor(cursor) == (f"q{views.MAX_CALLS:02}", None)

    anyio.run(go)
