"""``taskit._outage.Outage``: the one backoff-and-log helper of every loop that talks to the broker
(issue 11 item 5), and loops that use it backing off instead of spinning."""

from __future__ import annotations

import logging

import anyio
import pytest

from taskit import App, MemoryBroker
from taskit._outage import BACKOFF, LOG_EVERY, Outage
from taskit.backoff import Fixed
from taskit.scheduler import Scheduler

log = logging.getLogger("tests.outage")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]


def test_an_outage_is_logged_once_then_once_per_interval_then_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = Outage("reserve", log, backoff=Fixed(0.5), clock=clock)

    for _ in range(1000):  # a tight loop for 30 s of the clock
        assert outage.failed(ConnectionError("refused")) == 0.5
        clock.now += 0.03
    outage.recovered()
    outage.recovered()  # nothing to say the second time

    got = lines(caplog)
    assert got[0] == (
        logging.WARNING,
        "reserve failed: refused (retrying with backoff; next try in 0.50 s)",
    )
    still = [m for level, m in got if "still failing" in m]
    assert len(still) == 2  # at 10 s and 20 s (the log interval), not per try
    assert "still failing after 335 tries over 10.0 s: refused" in still[0]
    assert got[-1] == (logging.INFO, "reserve works again after 1000 failed tries over 30.0 s")
    assert len(got) == 4
    assert outage.failures == 0


def test_a_new_outage_after_a_recovery_is_logged_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("scheduler", log, clock=Clock())
    outage.failed(OSError("a"), "schedule x: run due t not enqueued yet")
    outage.recovered()
    outage.failed(OSError("b"))
    warnings = [m for level, m in lines(caplog) if level == logging.WARNING]
    assert warnings[0].startswith("schedule x: run due t not enqueued yet: a (retrying")
    assert warnings[1].startswith("scheduler failed: b (retrying")


def test_the_default_backoff_grows_with_jitter_and_is_capped() -> None:
    delays = [BACKOFF(n) for n in range(1, 40)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(2.5 <= d <= 5.0 for d in delays[10:])
    assert LOG_EVERY >= 5.0  # "at most one line every few seconds"


@pytest.mark.anyio
async def test_the_scheduler_backs_off_while_the_broker_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(MemoryBroker())

    @app.periodic(every=0.05)
    @app.task(name="tick")
    def tick() -> None: ...

    calls = 0

    async def down(key: str, ttl: float) -> bool:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("no broker")

    app.broker.claim = down  # type: ignore[method-assign]
    with anyio.move_on_after(1.0):
        await Scheduler(app).run()

    # Backoff 0.1, 0.2, 0.4 ... (each at least half): a handful of tries in a second, where the
    # loop used to retry the missed run at once, thousands of times.
    assert 2 <= calls <= 8, calls
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not enqueued yet: no broker" in warnings[0].getMessage()
