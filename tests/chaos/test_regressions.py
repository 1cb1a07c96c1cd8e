"""Bugs the chaos suite found, each pinned by a test of its own."""

from __future__ import annotations

import importlib.util

import anyio
import pytest

from taskit import App
from tests._ci import missing

pytestmark = pytest.mark.redis


def test_redis_broker_connects_on_uvloop(redis_url: str) -> None:
    """Every `taskit worker` (uvloop when installed) failed to connect: the RESP transport
    asserted ``isinstance(transport, asyncio.Transport)``, which uvloop's transports are not."""
    if importlib.util.find_spec("uvloop") is None:  # the dev extra brings it
        missing("uvloop is not installed")

    async def round_trip() -> object:
        app = App(redis_url)
        try:
            job = await app.remote("t", queue="chaos-uvloop").enqueue(1)
            got = await app.get_job(job.id)
            await app.broker.purge("chaos-uvloop")
            return got
        finally:
            await app.close()

    got = anyio.run(round_trip, backend="asyncio", backend_options={"use_uvloop": True})
    assert got is not None
