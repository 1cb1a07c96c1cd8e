"""Broker conformance: streams (``stream_add`` / ``stream_read`` / ``stream_ack``), what
``taskit.audit`` stands on. Runs unchanged against every broker kind; each test uses a stream of
its own. On Redis, time passes for real: the claim timeouts here are short."""

from __future__ import annotations

import uuid

import pytest

from tests.broker._sharded import SHARDED_MEMORY
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

CLAIM = 0.3  # seconds an unacknowledged entry waits before it is delivered again


def fresh() -> str:
    return f"stream-{uuid.uuid4().hex[:8]}"


async def test_each_group_gets_every_entry_once_oldest_first(harness: BrokerHarness) -> None:
    broker, stream = harness.broker, fresh()
    ids = [await broker.stream_add(stream, f"e{i}".encode(), maxlen=100) for i in range(5)]
    assert len(set(ids)) == 5
    first = await broker.stream_read(stream, "g1", "a", count=3, claim_after=30.0)
    rest = await broker.stream_read(stream, "g1", "b", count=10, claim_after=30.0)
    assert first + rest == [(i, f"e{n}".encode()) for n, i in enumerate(ids)]
    assert await broker.stream_read(stream, "g1", "a", count=10, claim_after=30.0) == []
    other = await broker.stream_read(stream, "g2", "a", count=10, claim_after=30.0)
    assert [entry for _, entry in other] == [f"e{n}".encode() for n in range(5)]
    later = await broker.stream_add(stream, b"e5", maxlen=100)
    assert await broker.stream_read(stream, "g1", "a", count=10, claim_after=30.0) == [
        (later, b"e5")
    ]


async def test_an_unacknowledged_entry_comes_again_after_claim_after(
    harness: BrokerHarness,
) -> None:
    broker, stream = harness.broker, fresh()
    one = await broker.stream_add(stream, b"one", maxlen=100)
    two = await broker.stream_add(stream, b"two", maxlen=100)
    got = await broker.stream_read(stream, "g", "dies", count=10, claim_after=CLAIM)
    assert [i for i, _ in got] == [one, two]
    assert await broker.stream_ack(stream, "g", [one]) == 1
    assert await broker.stream_ack(stream, "g", [one]) == 0  # already acknowledged
    assert await broker.stream_read(stream, "g", "b", count=10, claim_after=CLAIM) == []
    await harness.advance(CLAIM + 0.2)
    assert await broker.stream_read(stream, "g", "b", count=10, claim_after=CLAIM) == [
        (two, b"two")
    ]
    assert await broker.stream_ack(stream, "g", [two]) == 1
    await harness.advance(CLAIM + 0.2)
    assert await broker.stream_read(stream, "g", "b", count=10, claim_after=CLAIM) == []


async def test_the_stream_keeps_about_maxlen_entries(harness: BrokerHarness) -> None:
    broker, stream = harness.broker, fresh()
    ids = [await broker.stream_add(stream, b"x%d" % i, maxlen=10) for i in range(300)]
    got = await broker.stream_read(stream, "g", "a", count=1000, claim_after=30.0)
    # Redis trims whole blocks (``MAXLEN ~``, 100 entries a block by default): about maxlen.
    assert 10 <= len(got) <= 200
    assert [i for i, _ in got] == ids[-len(got) :]  # the newest are kept
    if harness.kind in ("memory", SHARDED_MEMORY):  # a memory broker keeps exactly maxlen
        assert len(got) == 10


async def test_acknowledging_unknown_ids_or_groups_is_harmless(harness: BrokerHarness) -> None:
    broker, stream = harness.broker, fresh()
    assert await broker.stream_ack(stream, "nobody", []) == 0
    entry = await broker.stream_add(stream, b"x", maxlen=10)
    await broker.stream_read(stream, "g", "a", count=1, claim_after=30.0)
    assert await broker.stream_ack(stream, "other", [entry]) == 0


async def test_bad_arguments_raise_value_error(harness: BrokerHarness) -> None:
    broker, stream = harness.broker, fresh()
    with pytest.raises(ValueError, match="maxlen"):
        await broker.stream_add(stream, b"x", maxlen=0)
    with pytest.raises(ValueError, match="count"):
        await broker.stream_read(stream, "g", "a", count=0, claim_after=1.0)
    with pytest.raises(ValueError, match="claim_after"):
        await broker.stream_read(stream, "g", "a", count=1, claim_after=0.0)
