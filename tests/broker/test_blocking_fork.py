"""A process forked after a sync enqueue gets blocking connections of its own (gunicorn
``--preload``): it never writes on its parent's socket, so neither reads the other's replies."""

from __future__ import annotations

import os
import signal
import threading
import uuid

from taskit.broker.redis import RedisBroker
from taskit.broker.redis.connections import Connections
from taskit.broker.redis.transport.shared import SharedClient
from tests._fork import forked
from tests.broker._helpers import make_job

CALLS = 300


def _echo_all(shared: SharedClient, tag: str, wrong: list[str]) -> None:
    for i in range(CALLS):
        try:
            got = shared.execute("ECHO", f"{tag}.{i}")
        except Exception as exc:  # a stolen reply shows as a timeout
            wrong.append(f"{tag}.{i}: {exc!r}")
            return
        if got != f"{tag}.{i}".encode():
            wrong.append(f"{tag}.{i}: {got!r}")


def _child(conn: Connections, parent: SharedClient) -> int:
    """The forked process's checks, as an exit status (0: all good)."""
    shared = conn.blocking()
    if shared is parent or not isinstance(shared, SharedClient):
        return 3  # the parent's connection, inherited
    wrong: list[str] = []
    _echo_all(shared, f"child{os.getpid()}", wrong)
    return 1 if wrong else 0


def test_a_forked_process_makes_its_own_blocking_connection(redis_url: str) -> None:
    conn = Connections(redis_url, timeout=2.0)
    parent = conn.blocking()
    assert isinstance(parent, SharedClient)
    assert parent.execute("PING") == b"PONG"  # connected before the fork, as a preloading master
    _, wait = forked(lambda: _child(conn, parent))
    wrong: list[str] = []
    worker = threading.Thread(target=_echo_all, args=(parent, "parent", wrong))
    worker.start()  # the parent keeps using its connection meanwhile
    worker.join(timeout=30)
    code = wait()
    try:
        assert code == 0
        assert not wrong
        assert conn.blocking() is parent  # the parent's own stays its own
    finally:
        parent.close()
        conn.pool.close()


def test_a_process_forked_while_a_thread_enqueues_enqueues_on_its_own(redis_url: str) -> None:
    """Forked while another thread's enqueue was on its way (so the parent's threads combine
    behind it: ``coalesce``), the child's enqueues do not wait for a call that, in the child,
    nobody will ever answer."""
    broker = RedisBroker(redis_url, prefix=f"taskit-test-{uuid.uuid4().hex[:12]}")
    run_blocking = broker._run_blocking
    on_its_way, go_on = threading.Event(), threading.Event()

    def held(*args: object) -> object:
        on_its_way.set()
        go_on.wait(30)
        return run_blocking(*args)  # type: ignore[arg-type]

    broker._run_blocking = held  # type: ignore[method-assign]
    first = make_job("q")
    parent = threading.Thread(target=broker.enqueue_blocking, args=([first],))
    parent.start()
    assert on_its_way.wait(10)
    broker._run_blocking = run_blocking  # type: ignore[method-assign]

    def child() -> int:
        signal.alarm(10)  # a hang shows as a kill, not as a stuck test run
        job = make_job("q")
        return 0 if broker.enqueue_blocking([job]) == [job] else 1

    _, wait = forked(child)
    try:
        assert wait() == 0
    finally:
        go_on.set()
        parent.join(10)
    assert broker.enqueue_blocking([make_job("q")]) is not None
    broker._conn.pool.close()
