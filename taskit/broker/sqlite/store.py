"""The SQLite broker's connection: opened once per broker, every call one transaction.

A ``Store`` opens its database file on first use in WAL mode with ``synchronous=NORMAL`` (a
commit survives a crash of the process, and power loss from the next checkpoint on; ``full``:
``synchronous=FULL``, an fsync a commit, so a commit survives power loss too) and a
``busy_timeout``, and creates or checks its schema (``schema.ensure``). Each broker call is one
function run inside one ``BEGIN IMMEDIATE`` transaction: the write lock is taken at the start,
so the call is atomic across processes (as one Lua script is on Redis) and never has to upgrade
a read lock and fail.

``run`` does it off the event loop, on the store's own connection thread (started on first
use), so a call waiting for another process's write lock never blocks the loop; it works under
asyncio and trio, and from several event loops at once. A call its caller marks ``small`` (a few
rows: one job's enqueue, reserve or settle) runs on the loop itself when it cannot block there:
nothing is queued for the thread, and the write lock comes at once (a third connection, with no
busy wait: another process or connection holding the lock sends the call to the thread) and its
commit writes to the WAL without syncing (``synchronous=NORMAL``; that connection never
checkpoints, the thread does every ``CHECKPOINT_EVERY`` such commits). Two thread hops and
their wake-ups are then saved: most of a small call's cost. ``run_now`` is that path alone,
from any thread (a worker's chain of ``def`` jobs settles each and takes the next in its
handler thread with it): done at once, or not at all. The thread takes the calls in the order
they came; the calls that queued up while it was busy it runs in one transaction, each in a
``SAVEPOINT`` of its own: each is still all or none (one that raises is rolled back alone and
gets its exception), and each caller hears back only after the commit that made its call
durable. One commit for several calls is what lets concurrent callers (a worker's reserves and
settles, many producers) go faster than one transaction a call; a lone caller pays one hop to
the thread and back, far less than a thread pool's. ``run_blocking`` does it in the calling
thread, on a connection of its own (``enqueue_blocking``). ``close`` closes both (the thread
first finishes the calls queued before it); the next call opens them again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from taskit.broker.sqlite.schema import ensure
from taskit.clock import Clock
from taskit.errors import BrokerError

__all__ = ["CHECKPOINT_EVERY", "GROUP", "LOCK_WAIT", "Store", "Tx"]

#: Seconds a transaction waits for another process's write lock before it fails.
LOCK_WAIT = 30.0
#: The most calls the connection thread runs in one transaction.
GROUP = 64
#: Commits on the event loop's connection between two checkpoints of the WAL (by the thread).
CHECKPOINT_EVERY = 256
#: SQLite's primary result codes for a lock another connection holds (an extended code, such
#: as SQLITE_BUSY_RECOVERY, carries its primary one in its low byte).
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED

_T = TypeVar("_T")
_CHECKPOINT = object()  # queued for the thread: checkpoint the WAL

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Tx:
    """One call's part of a transaction: its connection, the broker's time at its start, and
    whether it made jobs ready (reserves are then woken after the commit)."""

    conn: sqlite3.Connection
    now: float
    ready: bool = False


class _Connection:
    """One connection, opened on first use, used by one thread at a time. ``waits``: False for
    the event loop's (no busy wait, no checkpoints; the schema is checked by the thread's)."""

    def __init__(self, path: str, *, waits: bool = True, full: bool = False) -> None:
        self._path = path
        self._waits = waits
        self._full = full
        self._conn: sqlite3.Connection | None = None
        self.lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            path = self._path
            self._conn = _open(path, self._full) if self._waits else _open_unwaiting(path)
        return self._conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@dataclass(slots=True, eq=False)
class _Call(Generic[_T]):
    """One ``run``: the function, how to tell its event loop it is done (False: that loop is
    closed), the answer, whether its caller has resumed, and the call to tell after that."""

    fn: Callable[[Tx], _T]
    loop: object
    done: Callable[[], bool]
    out: Any = None
    ready: bool = False
    error: BaseException | None = field(default=None)
    resumed: bool = False
    next: _Call[Any] | None = None


class _Worker:
    """The connection thread: takes calls from its queue, runs them in groups (``GROUP``),
    tells ``on_ready``, then the callers, and ends at ``None``, closing its connection.

    The callers of one event loop resume one after another, in the order they called, as
    they did when each call was its own transaction: a call is told by the thread or, if the
    loop's previous call has not resumed yet, by that call's caller once it has. So two calls
    made in order finish in order (trio, for one, does not wake tasks in the order they were
    woken); a loop that never resumes its callers holds up no other loop's."""

    def __init__(
        self, path: str, clock: Clock, on_ready: Callable[[], None] | None, full: bool
    ) -> None:
        self._connection = _Connection(path, full=full)
        self._clock = clock
        self._path = path
        self._on_ready = on_ready
        self.pid = os.getpid()
        self.calls: queue.SimpleQueue[_Call[Any] | object | None] = queue.SimpleQueue()
        self.opened = False  # its connection is open: the schema was checked
        self._last: dict[object, _Call[Any]] = {}  # per loop: its last call not resumed
        self._order = threading.Lock()  # ``resumed``, ``next``, ``_last``: thread and callers
        self.thread = threading.Thread(
            target=self._serve, name=f"taskit-sqlite {path}", daemon=True
        )
        self.thread.start()

    def _serve(self) -> None:
        closing = False
        while not closing:
            first = self.calls.get()
            if first is None:
                break
            if first is _CHECKPOINT:
                self._checkpoint()
                continue
            assert isinstance(first, _Call)
            group: list[_Call[Any]] = [first]
            while len(group) < GROUP:
                try:
                    more = self.calls.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                if more is _CHECKPOINT:
                    continue  # this group's commit may checkpoint; the loop's asks again
                assert isinstance(more, _Call)
                group.append(more)
            self._run(group)
            for call in group:
                with self._order:
                    last = self._last.get(call.loop)
                    self._last[call.loop] = call
                    if last is not None and not last.resumed:
                        last.next = call  # told when ``last`` resumes
                        continue
                self.tell(call)
        self._connection.close()

    def tell(self, call: _Call[Any] | None) -> None:
        """Tell ``call`` it is done; past callers whose loop is closed (they never resume),
        to the next."""
        while call is not None and not call.done():
            call = self.resumed(call)

    def resumed(self, call: _Call[Any]) -> _Call[Any] | None:
        """``call``'s caller has resumed (or never will): the call to tell next, if any."""
        with self._order:
            call.resumed = True
            if self._last.get(call.loop) is call:
                del self._last[call.loop]
            return call.next

    def _checkpoint(self) -> None:
        """Copy the WAL into the database as far as no reader needs it (the event loop's
        connection never does, so its commits never wait on a sync)."""
        try:
            conn = self._connection.get()
            self.opened = True
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the next commit or checkpoint tries again
            log.warning("SQLite broker %r: checkpoint failed: %s", self._path, exc)

    def _run(self, group: list[_Call[Any]]) -> None:
        """Every call of ``group`` in one transaction (each in a savepoint of its own when
        there are several); a failure of the transaction itself fails them all."""
        try:
            conn = self._connection.get()
            self.opened = True
            transaction(conn)
            try:
                if len(group) == 1:
                    _alone(conn, group[0], self._clock)
                else:
                    for call in group:
                        _in_savepoint(conn, call, self._clock, self._path)
            except BaseException:
                conn.rollback()
                raise
            commit(conn)
        except BaseException as exc:  # the transaction failed: no call of it took effect
            error = _error(exc, self._path)
            for call in group:
                if call.error is None:
                    call.error = error
                call.ready = False
            return
        if self._on_ready is not None and any(call.ready for call in group):
            self._on_ready()


def _alone(conn: sqlite3.Connection, call: _Call[Any], clock: Clock) -> None:
    """``call`` as the whole transaction: its exception rolls the transaction back."""
    tx = Tx(conn, clock.time())
    call.out = call.fn(tx)
    call.ready = tx.ready


def _in_savepoint(conn: sqlite3.Connection, call: _Call[Any], clock: Clock, path: str) -> None:
    """``call`` in a savepoint: its exception undoes its own changes only, and is its answer
    (where the savepoint cannot be rolled back, the whole transaction fails)."""
    conn.execute("SAVEPOINT call")
    tx = Tx(conn, clock.time())
    try:
        call.out = call.fn(tx)
    except Exception as exc:
        conn.execute("ROLLBACK TO call")  # sqlite3.Error: the transaction is lost, all fail
        call.error = _error(exc, path)
    else:
        call.ready = tx.ready
    conn.execute("RELEASE call")


def _error(exc: BaseException, path: str) -> BaseException:
    """What a caller is told of ``exc``: an SQLite error (disk full, I/O error, a damaged
    file...) as a ``BrokerError`` naming the file, any other as it is."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    error = BrokerError(f"SQLite broker {path!r}: {exc}")
    error.__cause__ = exc
    return error


class Store:
    """The database at ``path``, its transactions timed by ``clock``. ``on_ready`` (if given)
    is called after each commit of ``run`` calls of which one made jobs ready, before their
    callers hear back: once a commit, however many calls it held. ``full``: every commit is
    synced to the disk (``synchronous=FULL``)."""

    def __init__(
        self,
        path: str,
        clock: Clock,
        on_ready: Callable[[], None] | None = None,
        *,
        full: bool = False,
    ) -> None:
        self.path = path
        self._clock = clock
        self._on_ready = on_ready
        self._full = full  # synchronous=FULL: no call runs on the loop (its commit syncs)
        self._sync = _Connection(path, full=full)
        self._sync_pid = os.getpid()
        self._here = _Connection(path, waits=False)  # for small calls done at once (run_now)
        self._here_pid = os.getpid()
        self._worker: _Worker | None = None
        self._lock = threading.Lock()  # the worker is started and stopped by any thread
        self._queued = 0  # calls handed to the thread whose callers have not resumed (_lock)
        self._commits_here = 0  # commits on ``_here`` since the last checkpoint

    async def run(self, fn: Callable[[Tx], _T], *, small: bool = False) -> tuple[_T, bool]:
        """``fn`` in one transaction, on the connection thread; its result, and whether it made
        jobs ready. An exception rolls its changes back and propagates. Once handed to the
        thread the call is waited for even if the caller is cancelled (the cancellation is
        delivered after it), so a call that took effect is never reported as not run.
        ``small``: ``fn`` touches a few rows; it runs on the loop when it cannot block there
        (the module docstring), and the caller still yields to the loop once after it."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if small:
            here = self.run_now(fn)
            if here is not None:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return here
        done = anyio.Event()
        loop = anyio.lowlevel.current_token().native_token
        soon = _call_soon(loop)
        call: _Call[_T] = _Call(fn, loop, lambda: soon(done.set))
        with self._lock:
            worker = self._started()
            self._queued += 1
        worker.calls.put(call)
        try:
            with anyio.CancelScope(shield=True):
                await done.wait()
        finally:
            with self._lock:
                self._queued -= 1
            worker.tell(worker.resumed(call))
        if call.error is not None:
            raise call.error
        return call.out, call.ready

    def run_now(self, fn: Callable[[Tx], _T]) -> tuple[_T, bool] | None:
        """``fn`` in a transaction on the calling thread (the event loop's, or any other) if
        that cannot wait: the commit does not sync (not ``full``), the connection thread has
        nothing queued (calls finish in the order they were made) and has checked the schema,
        the write lock is free at once and nobody else uses this connection. None: it did not
        run (nothing changed); ``run`` is to run it, on the thread."""
        if self._full:
            return None
        with self._lock:
            worker = self._worker
            if self._queued or worker is None or not worker.opened or worker.pid != os.getpid():
                return None
            if self._here_pid != worker.pid:  # a forked copy: its parent's connection is not ours
                self._here, self._here_pid = _Connection(self.path, waits=False), worker.pid
            connection = self._here
        if not connection.lock.acquire(blocking=False):
            return None  # another event loop's call is running here
        try:
            try:
                conn = connection.get()
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:  # the lock is held (or the file cannot be opened): the thread
                return None
            try:
                tx = Tx(conn, self._clock.time())
                out = fn(tx)
                commit(conn)
            except BaseException as exc:
                conn.rollback()
                if _busy(exc):
                    return None  # rolled back: the thread runs it again, waiting for the lock
                if isinstance(exc, sqlite3.Error):
                    raise _error(exc, self.path) from exc
                raise
            self._commits_here += 1  # under the connection's lock: callers of any thread
            checkpoint = self._commits_here >= CHECKPOINT_EVERY
            if checkpoint:
                self._commits_here = 0
        finally:
            connection.lock.release()
        if checkpoint:
            worker.calls.put(_CHECKPOINT)
        if tx.ready and self._on_ready is not None:
            self._on_ready()
        return out, tx.ready

    def run_blocking(self, fn: Callable[[Tx], _T]) -> tuple[_T, bool]:
        """``run`` in the calling thread, on the store's second connection (a process forked
        after a call opens one of its own: SQLite's connections must not cross a fork, and
        the parent's lock may have been held by a thread the child does not have)."""
        with self._lock:
            if self._sync_pid != os.getpid():  # the parent's is left alone, not closed here
                self._sync, self._sync_pid = _Connection(self.path, full=self._full), os.getpid()
            connection = self._sync
        with connection.lock:
            try:
                conn = connection.get()
                transaction(conn)
                try:
                    tx = Tx(conn, self._clock.time())
                    out = fn(tx)
                except BaseException:
                    conn.rollback()
                    raise
                commit(conn)
            except sqlite3.Error as exc:  # disk full, I/O error, a damaged file...
                raise BrokerError(f"SQLite broker {self.path!r}: {exc}") from exc
            return out, tx.ready

    def close(self) -> None:
        """Close both connections: the thread's once the calls queued before this are done."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.calls.put(None)
            if threading.current_thread() is not worker.thread:
                worker.thread.join()
        self._sync.close()
        self._here.close()

    def _started(self) -> _Worker:
        """The connection thread, started if there is none in this process (hold ``_lock``)."""
        worker = self._worker
        if worker is None or worker.pid != os.getpid():  # none yet, or a forked copy's
            worker = self._worker = _Worker(self.path, self._clock, self._on_ready, self._full)
        return worker


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's refusal for a lock another connection holds. An error the
    sqlite3 module raises itself (a text column that does not decode...) has no result code."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and (code & 0xFF) in _BUSY


def _call_soon(native: object) -> Callable[[Callable[[], object]], bool]:
    """How another thread has ``fn`` called on the event loop of ``native`` (an asyncio loop
    or a trio token); False: the loop is closed, ``fn`` will not be called."""
    schedule: Callable[[Callable[[], object]], object] = getattr(
        native, "call_soon_threadsafe", None
    ) or getattr(native, "run_sync_soon")  # noqa: B009 (mypy: neither is on ``object``)

    def soon(fn: Callable[[], object]) -> bool:
        try:
            schedule(fn)
        except RuntimeError:  # the loop is closed: nobody waits any more
            return False
        return True

    return soon


def transaction(conn: sqlite3.Connection) -> None:
    """Begin a write transaction; ``BrokerError`` if the write lock did not come in time."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise BrokerError(f"SQLite broker: cannot take the database's write lock: {exc}") from exc


def commit(conn: sqlite3.Connection) -> None:
    """Commit the transaction ``conn`` began. Through ``execute``, whose statements are cached:
    ``Connection.commit`` compiles its ``COMMIT`` anew every time (a few thousand instructions
    on every call of the broker). A ``COMMIT`` that fails (disk full, an I/O error) may leave
    the transaction open: it is rolled back, or every later ``BEGIN`` of this connection would
    fail."""
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # raised below is the COMMIT's error
                conn.rollback()
        raise


def _open_unwaiting(path: str) -> sqlite3.Connection:
    """A connection that never waits for a lock (``sqlite3.OperationalError`` at once) and never
    checkpoints: for the event loop. The database is already in WAL mode with its schema."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def _open(path: str, full: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT * 1000:.0f}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise BrokerError(f"SQLite broker: {path!r} cannot use WAL (journal mode {mode!r})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
        transaction(conn)
        try:
            ensure(conn, path)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn
