"""The sync spelling's blocking path on Redis (``Broker.enqueue_blocking``): the same results as
``enqueue``, no loop thread, pooled connections (lent to one thread at a time), errors mapped,
and the fallbacks (event handlers, test factories) still on the App's loop thread."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from taskit import App
from taskit.broker.redis import RedisBroker
from taskit.broker.redis._testing import blocking_clients
from taskit.broker.redis.transport.redispy import over
from taskit.errors import BrokerConnectionError, PayloadTooLargeError
from taskit.events import JobEvent
from taskit.job import JobStatus
from tests.broker._helpers import make_job, new_queue
from tests.broker._redis_kinds import OwnRedisServer, free_port


@pytest.fixture
def app(redis_url: str) -> App:
    return App(RedisBroker(redis_url, prefix=f"taskit-test-{uuid.uuid4().hex[:12]}"))


def portal_started(app: App) -> bool:
    return app.sync_thread_running


def test_enqueue_sync_stores_the_job_without_the_loop_thread(app: App) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    try:
        job = add.enqueue_sync(2, 3)
        assert job.status is JobStatus.PENDING
        assert not portal_started(app)  # the blocking path, not the App's loop thread
        stored = app.run_sync(app.get_job, job.id)
        assert stored is not None
        assert (stored.task, stored.status, stored.args) == ("add", JobStatus.PENDING, (2, 3))
    finally:
        app.close_sync()


def test_a_waiting_unique_job_is_kept_and_returned(app: App) -> None:
    @app.task(name="charge")
    def charge(order: int) -> None: ...

    try:
        first = charge.options(job_id="order-17").enqueue_sync(17)
        again = charge.options(job_id="order-17").enqueue_sync(99)
        assert again.id == first.id
        assert again.args == (17,)  # the waiting job, not the new arguments
        assert app.run_sync(app.stats)["default"].queued == 1
    finally:
        app.close_sync()


def test_schedule_sync_and_batches_go_the_same_way(app: App) -> None:
    @app.task(name="later")
    def later() -> None: ...

    try:
        when = datetime.now(UTC) + timedelta(hours=1)
        scheduled = later.schedule_sync(when)
        batch = app.enqueue_many_sync([later.options(queue=q).prepare() for q in ("a", "b", "a")])
        assert scheduled.status is JobStatus.SCHEDULED
        assert scheduled.scheduled_at is not None
        assert abs((scheduled.scheduled_at - when).total_seconds()) < 0.01
        assert [job.queue for job in batch] == ["a", "b", "a"]
        assert not portal_started(app)
        counts = app.run_sync(app.stats)
        assert (counts["a"].queued, counts["b"].queued, counts["default"].scheduled) == (2, 1, 1)
    finally:
        app.close_sync()


def test_bad_input_is_refused_before_anything_is_stored(app: App) -> None:
    @app.task(name="big")
    def big(data: str) -> None: ...

    try:
        with pytest.raises(PayloadTooLargeError):
            app.enqueue_many_sync([big.prepare("x"), big.prepare("y" * 2_000_000)])
        with pytest.raises(TypeError, match="expected Job objects"):
            app.enqueue_many_sync(["not a job"])  # type: ignore[list-item]
        assert app.run_sync(app.stats) == {}
    finally:
        app.close_sync()


def test_threads_enqueue_at_once_each_on_a_connection_of_its_own(app: App) -> None:
    @app.task(name="noop")
    def noop(i: int) -> None: ...

    ids: list[str] = []
    lock = threading.Lock()
    together = threading.Barrier(4)

    def produce(start: int) -> None:
        noop.enqueue_sync(start)
        together.wait(timeout=10)  # each has been lent a connection: none is idle for another
        mine = [noop.enqueue_sync(i).id for i in range(start + 1, start + 100)]
        with lock:
            ids.extend(mine)

    try:
        threads = [threading.Thread(target=produce, args=(n * 100,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(set(ids)) == 396
        assert app.run_sync(app.stats)["default"].queued == 400
        idle = blocking_clients(app.broker)  # type: ignore[arg-type]
        assert 1 <= len(idle) <= 4  # never more connections than threads at once
    finally:
        app.close_sync()


def test_with_event_handlers_it_runs_on_the_loop_thread_so_they_fire(app: App) -> None:
    seen: list[str] = []

    @app.task(name="noop")
    def noop() -> None: ...

    @app.on("created")
    async def created(event: JobEvent) -> None:
        seen.append(event.job_id)

    try:
        job = noop.enqueue_sync()
        assert seen == [job.id]
        assert portal_started(app)
    finally:
        app.close_sync()


def test_called_from_async_code_it_refuses(app: App) -> None:
    @app.task(name="noop")
    def noop() -> None: ...

    async def inside() -> None:
        with pytest.raises(RuntimeError, match="await the async method"):
            noop.enqueue_sync()

    try:
        anyio.run(inside)
    finally:
        app.close_sync()


def test_an_unreachable_redis_is_a_connection_error_without_the_password() -> None:
    broker = RedisBroker(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    with pytest.raises(BrokerConnectionError) as caught:
        broker.enqueue_blocking([make_job(new_queue())])
    assert "cannot be reached" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_it_reconnects_after_redis_restarts_and_reloads_its_scripts() -> None:
    server = OwnRedisServer()
    server.start()
    broker = RedisBroker(server.url)
    try:
        queue = new_queue()
        [first] = broker.enqueue_blocking([make_job(queue)]) or []
        server.kill()
        with pytest.raises(BrokerConnectionError):
            broker.enqueue_blocking([make_job(queue)])
        server.start()  # empty: no scripts loaded, no data
        [second] = broker.enqueue_blocking([make_job(queue)]) or []
        assert second.status is JobStatus.PENDING
        assert second.id != first.id
    finally:
        server.stop()
        anyio.run(broker.close)


def test_a_broker_without_the_fast_transport_falls_back_to_the_loop_thread(redis_url: str) -> None:
    import fakeredis

    server = fakeredis.FakeServer()
    broker = RedisBroker(connect=over(lambda: fakeredis.FakeAsyncRedis(server=server)))
    assert broker.enqueue_blocking([make_job("q")]) is None
    app = App(broker)

    @app.task(name="noop")
    def noop() -> None: ...

    try:
        assert noop.enqueue_sync().status is JobStatus.PENDING
        assert portal_started(app)
    finally:
        app.close_sync()


def test_a_thread_per_request_does_not_pile_up_connections() -> None:
    """On a server of the test's own: ``CLIENT LIST`` on a shared one also lists the
    connections of other tests running at the same time (pytest-xdist's other workers)."""
    import gc

    import redis

    server = OwnRedisServer()
    server.start()
    app = App(RedisBroker(server.url))

    @app.task(name="noop")
    def noop() -> None: ...

    direct = redis.Redis.from_url(server.url)

    def ours() -> int:
        return sum(1 for c in direct.client_list() if c.get("name") == "taskit")

    try:
        before = ours()
        for _ in range(30):  # as a threading HTTP server does: a new thread per request
            thread = threading.Thread(target=noop.enqueue_sync)
            thread.start()
            thread.join(timeout=10)
        gc.collect()
        assert ours() - before == 1  # each thread borrowed the same pooled connection
        assert len(blocking_clients(app.broker)) == 1  # type: ignore[arg-type]
        assert app.run_sync(app.stats)["default"].queued == 30
    finally:
        direct.close()
        app.close_sync()
        server.stop()


def test_a_connection_made_again_after_close_is_closed_by_the_next_close(redis_url: str) -> None:
    broker = RedisBroker(redis_url, prefix=f"taskit-test-{uuid.uuid4().hex[:12]}")
    queue = new_queue()
    assert broker.enqueue_blocking([make_job(queue)])
    anyio.run(broker.close)
    assert broker.enqueue_blocking([make_job(queue)])  # the pool reconnects
    [client] = blocking_clients(broker)
    assert client._sock is not None

    anyio.run(broker.close)

    assert client._sock is None

    async def tidy() -> None:
        await broker.purge(queue)
        await broker.close()

    anyio.run(tidy)


def test_a_pooled_connection_the_server_closed_is_made_again_before_the_command(
    redis_url: str,
) -> None:
    """Found closed while idle (a restart, the server's idle ``timeout``, ``CLIENT KILL``), it
    is a reconnect, not a reply lost after sending (``BrokerOutcomeUnknownError``)."""
    import redis

    broker = RedisBroker(redis_url, prefix=f"taskit-test-{uuid.uuid4().hex[:12]}")
    direct = redis.Redis.from_url(redis_url)
    queue = new_queue()
    try:
        assert broker.enqueue_blocking([make_job(queue)])
        [client] = blocking_clients(broker)
        assert client._sock is not None
        host, port = client._sock.getsockname()[:2]
        assert direct.client_kill(f"{host}:{port}")
        [again] = broker.enqueue_blocking([make_job(queue)]) or []
        assert again.status is JobStatus.PENDING
    finally:
        direct.close()
        anyio.run(broker.close)
