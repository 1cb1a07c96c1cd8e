"""Load and time: catalogue rows 13 (clock skew), 14 (many enqueuers sharing ids) and 17
(retention: memory returns to baseline, no orphan keys, live jobs carry no TTL)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import anyio
import pytest

from taskit import App, Job
from taskit.broker.redis.keys import Keys
from tests.chaos.harness import PREFIX, Cluster, cluster, consistency_problems, wait_until
from tests.chaos.producing import work_jobs
from tests.chaos.retention import run_retention

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def skewed_env(chaos: Cluster, offset: float) -> tuple[dict[str, str], str]:
    """The env of a worker whose clock is ``offset`` seconds off: the whole process under
    libfaketime when installed (``apt-get install faketime``), else Python's ``time.time``."""
    env = chaos.env(CHAOS_CLOCK_OFFSET=str(offset))
    if os.path.exists(FAKETIME):
        env.update(LD_PRELOAD=FAKETIME, FAKETIME=f"{offset:+.0f}", FAKETIME_DONT_FAKE_MONOTONIC="1")
        return env, "libfaketime"
    env["CHAOS_PY_SKEW"] = "1"
    return env, "python time.time"


async def test_row13_skewed_worker_clocks_neither_reclaim_early_nor_run_delayed_jobs_early(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, visibility_timeout=1.5, reaper_interval=0.2) as chaos:
        app = App(chaos.url)
        try:
            ahead, how = skewed_env(chaos, +3600)  # an hour fast: sees every lease as expired
            behind, _ = skewed_env(chaos, -3600)
            runner = chaos.spawn("-c", "2", "-q", "long")  # a true clock runs the long job
            await app.enqueue_many(
                [app.remote("chaos.work", queue="long").options(job_id="long").prepare("long", 3)]
            )
            wait_until(lambda: any(e.kind == "S" for e in chaos.entries()), 20)
            chaos.spawn("-c", "2", "-q", "long,default", env=ahead)
            chaos.spawn("-c", "2", "-q", "long,default", env=behind)
            delayed = (
                await app.remote("chaos.work").options(job_id="later").schedule(2.0, "later", 0)
            )
            assert (await app.result("long", timeout=30)).success
            assert (await app.result("later", timeout=30)).success
            final_long, final_later = await app.get_job("long"), await app.get_job("later")
        finally:
            await app.close()
        assert final_long is not None
        assert final_later is not None
        assert final_long.attempts == 1  # no early reclaim by the fast clock's reaper
        assert not [e for e in chaos.entries() if e.kind == "C"]
        assert [e.pid for e in chaos.entries() if e.kind == "S" and e.job_id == "long"] == [
            runner.pid
        ]
        assert delayed.scheduled_at is not None
        assert final_later.started_at is not None
        assert final_later.started_at >= delayed.scheduled_at  # server clock: never early
        print(f"row 13: skew +-3600 s via {how}: no early reclaim, no early delayed run")


async def test_row14_many_concurrent_enqueuers_half_sharing_ids(chaos: Cluster) -> None:
    app = App(chaos.url)
    rng = random.Random(14)
    wanted = [f"u{i}" for i in range(500)] + [f"s{i % 50}" for i in range(500)]
    rng.shuffle(wanted)
    answers: list[Job] = []
    try:

        async def produce(n: int, key: str) -> None:
            [job] = work_jobs(app, [key], 0.0)
            job = job.__class__(**{**{f: getattr(job, f) for f in job.__struct_fields__},
                                   "metadata": {"producer": n}})  # fmt: skip
            answers.extend(await app.enqueue_many([job]))

        async with anyio.create_task_group() as tg:
            for n, key in enumerate(wanted):
                tg.start_soon(produce, n, key)
        assert len(answers) == 1000  # every producer was acknowledged
        distinct = set(wanted)
        client = chaos.client()
        try:
            assert client.hlen(Keys(PREFIX).jobs) == len(distinct) == 550
            assert consistency_problems(client, ["default"]) == []
        finally:
            client.close()
        by_id: dict[str, set[int]] = {}
        for job in answers:
            by_id.setdefault(job.id, set()).add(job.metadata["producer"])
        assert all(len(v) == 1 for v in by_id.values())  # sharers all got the one stored job
        chaos.spawn("-c", "16")
        for key in distinct:
            await app.result(key, timeout=30)
    finally:
        await app.close()
    report = chaos.report(sorted(distinct))
    report.assert_clean()
    assert report.dup == []  # one run per distinct id
    assert report.starts == 550


async def test_row17_retention_memory_returns_to_baseline_no_orphans_no_live_ttl(
    tmp_path: Path,
) -> None:
    from tests.e2e.helpers import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    try:
        figures = await run_retention(server.url, jobs=10_000, batch=1000)
    finally:
        server.kill()
    print(f"row 17: {figures.line()}")
    assert figures.live_ttls == 0
    assert figures.orphans == []
    assert figures.growth < 1_000_000, figures.line()  # bytes over baseline once results expired
    assert figures.done_without_ttl == 0
