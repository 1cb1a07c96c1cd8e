"""Blocking waits of the Redis broker: an idle ``reserve`` sleeps in ``BLPOP`` on its queues'
wake lists (see ``broker``), on a connection of its own (``connections``).

``wait`` only waits. ``wait_then_run`` also sends a command (the reserve script) right behind the
``BLPOP`` on the same connection: Redis runs it the moment the ``BLPOP`` returns, so a woken
worker has its jobs one round trip sooner (the leases are made by the same script, under the same
fencing). A wait cut short (the caller is cancelled, or the server does not answer in time) first
ends the ``BLPOP`` with ``CLIENT UNBLOCK`` from the script connection and reads the command's
reply, so nothing it leased goes unseen. Only when no reply comes (within ``_CUT_SHORT_WAIT``: a
stopped server must not hold up a stopping worker) is the connection dropped: the ``BLPOP`` still
blocked then, so the command behind it never ran.

``call_or_salvage`` is the same promise for a reserve sent on its own (no wait in front): its
caller may be cancelled while the reply is on its way, without waiting for a server that has
stopped answering.

Cancellation always propagates: a cancelled wait whose command ran hands the reply to the
caller's ``salvage`` (shielded; the reserve releases what it took) and then re-raises. It never
returns instead, which would let a cancelled reserve loop on (and lease jobs for a caller that is
gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import redis.exceptions

from taskit.broker.redis.connections import Connections
from taskit.broker.redis.errors import Dropped, refusal_of
from taskit.broker.redis.transport import Arg, Transport
from taskit.broker.redis.transport.fast import FastClient

__all__ = ["PIPELINE_FROM", "call_or_salvage", "wait", "wait_then_run"]

#: Waits at least this long (seconds) may carry a command behind them; shorter ones must end on
#: time, which only the client can ensure (Redis checks blocking timeouts ten times a second).
PIPELINE_FROM = 1.0
#: A cut-short wait: CLIENT UNBLOCK tries, how long to wait for the reply after each, and for
#: everything at most (seconds).
_UNBLOCK_TRIES = 10
_UNBLOCK_WAIT = 0.1
_CUT_SHORT_WAIT = 0.5


async def wait(conn: Connections, wake: Sequence[str], seconds: float) -> None:
    """Block until a token arrives on one of the ``wake`` lists or ``seconds`` pass."""
    if seconds <= 0:
        await anyio.lowlevel.checkpoint()
        return
    if not wake:
        await anyio.sleep(seconds)
        return
    waits = conn.pair().waits
    if not isinstance(waits, FastClient):
        # Redis checks blocking timeouts only every 100 ms: the client cuts the wait on time
        # (redis-py drops the connection of a cancelled command); the server timeout is a
        # backstop.
        with anyio.move_on_after(seconds):
            await _blpop(conn, waits, wake, seconds + 1.0, seconds)
        return
    # A short wait (a delayed job falls due, a burst tick) must end on time: the client cuts
    # it. A long one (an idle worker's loop) may end up to 100 ms late, so Redis times it
    # out and the connection is kept. A cut or cancelled BLPOP may still hold the server
    # side of its connection: that connection is dropped.
    precise = seconds < PIPELINE_FROM
    finished = False
    try:
        # A long wait's backstop: its own length plus the broker's bound on a reply.
        with anyio.move_on_after(seconds if precise else seconds + conn.timeout):
            server = seconds + 1.0 if precise else seconds
            await _blpop(conn, waits, wake, server, server)
            finished = True
    finally:
        if not finished:
            waits.drop()


async def _blpop(
    conn: Connections, waits: Transport, wake: Sequence[str], server: float, wait: float
) -> None:
    """One ``BLPOP`` on ``wake`` (``server`` seconds on the server). Its connection dropped
    under it by this process is a wake-up, not an error (``_or_dropped``)."""
    await conn.guard(_or_dropped(waits.execute("BLPOP", *wake, f"{server:.3f}", wait=wait)))


#: A wait's answer when this process dropped its connection under it.
_DROPPED = object()


async def _or_dropped(call: Awaitable[Any]) -> Any:
    """``call``'s reply, or ``_DROPPED`` if this process closed its connection first: the waits
    of one event loop share that connection, and one cut short drops it under the others. A
    wait's only effect is a wake-up token it may have taken, so its caller looks again at once.
    A connection the server or the network closed, or that stopped answering, raises as ever
    (a wake-up there would spin on a server that closes every connection)."""
    try:
        return await call
    except Dropped:
        return _DROPPED


async def wait_then_run(
    conn: Connections,
    wake: Sequence[str],
    seconds: float,
    command: Sequence[Arg],
    salvage: Callable[[Any], Awaitable[None]],
) -> Any:
    """Wait like ``wait`` (``seconds`` >= ``PIPELINE_FROM``, fast transports), then return
    the raw reply of ``command`` (an error reply as a ``ResponseError`` instance, not raised).

    Returns None when the wait was cut short by its own timeout, or its connection dropped
    under it by another wait of this process, and no reply came (nothing ran).
    If the caller is cancelled (or the wait fails) after ``command`` ran, its reply goes to
    ``salvage`` (awaited shielded, must not raise) and the cancellation (or error) propagates.
    Raises ``BrokerConnectionError`` as ``guard`` does.
    """
    pair = conn.pair()
    waits, main = pair.waits, pair.commands
    if not isinstance(waits, FastClient) or not isinstance(main, FastClient):
        raise ValueError("wait_then_run needs the fast transport (FastClient)")
    blpop, call = await conn.guard(
        waits.send(("BLPOP", *wake, f"{seconds:.3f}"), command, wait=seconds)
    )
    woken = False
    try:
        # Redis times the wait out; this backstop allows the broker's bound on a reply on top.
        with anyio.move_on_after(seconds + conn.timeout):
            woke = await conn.guard(_or_dropped(asyncio.shield(blpop)))
            # Dropped under it by another wait cut short (``_or_dropped``): as a wait cut
            # short, below. That wait dropped it while its own BLPOP still blocked, in front
            # of this one, so the command behind this one never ran.
            woken = woke is not _DROPPED
    except BaseException:  # cancelled, or the connection failed: never swallowed
        with anyio.CancelScope(shield=True):
            reply = await _cut_short(waits, main, call)
            if reply is not None:
                await salvage(reply)
        raise
    with anyio.CancelScope(shield=True):
        if not woken:
            reply = await _cut_short(waits, main, call)
        elif _refusal(woke):
            reply = await _after_refusal(woke, call)
        else:  # bounded by the connection's watchdog (see _resp): no reply in time fails it
            reply = await conn.guard(asyncio.shield(call))
    return reply


def _refusal(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.ResponseError) and refusal_of(reply) is not None


async def _after_refusal(woke: redis.exceptions.ResponseError, call: asyncio.Future[Any]) -> Any:
    """The reply of the command behind a BLPOP that was refused (MOVED after a reshard, or
    UNBLOCKED when its master became a replica): that reply, or the BLPOP's refusal if the
    connection closed first. Redis closes a connection after UNBLOCKED without reading on, and
    a node no longer serving the slot refuses the command too, so it never ran: the caller
    follows the refusal (``FastClient.relocate``)."""
    try:
        return await asyncio.shield(call)
    except redis.exceptions.ConnectionError:
        return woke


async def call_or_salvage(
    conn: Connections,
    client: FastClient,
    command: Sequence[Arg],
    salvage: Callable[[Any], Awaitable[None]],
) -> Any:
    """Send ``command`` and return its raw reply (an error reply as a ``ResponseError``
    instance). The caller may be cancelled at any point: before the command went out nothing
    ran; after, its reply gets up to ``_CUT_SHORT_WAIT`` seconds to come and goes to ``salvage``
    (shielded, must not raise); then the cancellation propagates. A reply later than that is
    left unread: what the command leased expires and is reclaimed, nothing is lost."""
    [call] = await conn.guard(client.send(command))
    try:
        return await conn.guard(asyncio.shield(call))
    except BaseException:  # cancelled, or the connection failed: never swallowed
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(_CUT_SHORT_WAIT):
                await asyncio.wait([call])
            if call.done() and not call.cancelled() and call.exception() is None:
                await salvage(call.result())
        raise


async def _cut_short(waits: FastClient, main: FastClient, call: asyncio.Future[Any]) -> Any:
    """End the BLPOP in front of ``call`` and return ``call``'s reply, or None (call shielded).
    Gives up after ``_CUT_SHORT_WAIT`` seconds (a stopped server answers nothing)."""
    client_id = waits.client_id
    with anyio.move_on_after(_CUT_SHORT_WAIT):
        unblockable = client_id is not None
        for _ in range(_UNBLOCK_TRIES if unblockable else 1):
            if call.done():
                break
            if unblockable and client_id is not None:
                try:
                    await main.execute("CLIENT", "UNBLOCK", client_id)
                except (redis.exceptions.RedisError, OSError):
                    unblockable = False  # refused (an ACL, a proxy): only a reply in flight
            with anyio.move_on_after(_UNBLOCK_WAIT):
                await asyncio.wait([call])
            if not unblockable:
                break
    if not call.done() or call.cancelled() or call.exception() is not None:
        waits.drop()  # no reply: the BLPOP still blocks, so the command behind it never ran
        return None
    return call.result()
