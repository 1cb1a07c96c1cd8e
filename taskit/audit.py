"""Audit events across processes: job events published through the broker, for any process.

``taskit.events`` delivers a job's events in the process where it changed (a worker sees
``completed``, the web process that enqueued it does not). ``publish`` adds a subscriber that
appends each event to the broker's ``audit`` stream; ``subscribe`` reads that stream from any
process, as one consumer of a named group::

    taskit.audit.publish(app, maxlen=100_000)          # in the app module: every process sends

    async for delivery in taskit.audit.subscribe(app, group="web"):
        await record(delivery.event)                   # a taskit.events.JobEvent
        await delivery.ack()

Delivery is at-least-once per group: each group sees every event kept, each event goes to one
consumer of the group, and one not acknowledged within ``claim_after`` seconds (its consumer
died, or its handler failed) is delivered again, to whichever consumer reads next. Groups are
independent (``web`` and ``billing`` each see everything). A new group starts at the oldest event
kept. The stream keeps about the newest ``maxlen`` events (Redis trims in whole blocks, so
slightly more); older ones are gone for every group, read or not.

Publishing is an ordinary events subscriber, so it runs after the broker applied the change; a
broker failure while publishing is logged and skipped like any subscriber's error (the job is
unaffected, the event is lost). Events travel as msgpack (msgspec): ``[version, event]``.
On Redis the stream is ``{prefix}:stream:audit`` (Redis 6.2 or newer); on the memory broker it
lives in the broker, so only that process sees it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import anyio
import msgspec

from taskit.app import App
from taskit.broker.base import Broker
from taskit.events import EventKind, JobEvent

__all__ = ["STREAM", "Delivery", "Publisher", "consume", "decode", "encode", "publish", "subscribe"]

log = logging.getLogger(__name__)

#: The broker stream audit events travel on.
STREAM = "audit"
#: The wire format's version: the first item of each entry.
VERSION = 1


def encode(event: JobEvent) -> bytes:
    """``event`` as the stream holds it: msgpack ``[VERSION, event]``."""
    return _ENCODER.encode((VERSION, event))


def decode(data: bytes) -> JobEvent:
    """An event from ``encode``'s bytes; ``ValueError`` for bytes that are not one (another
    version, or damaged)."""
    try:
        version, raw = _HEAD.decode(data)
        if version != VERSION:
            raise ValueError(f"audit event of wire version {version}, this taskit reads {VERSION}")
        return _EVENT.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an audit event: {exc}") from None


def _enc_hook(value: Any) -> Any:
    if isinstance(value, MappingProxyType):  # JobEvent.metadata
        return dict(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_HEAD = msgspec.msgpack.Decoder(tuple[int, msgspec.Raw])
_EVENT = msgspec.msgpack.Decoder(JobEvent)


class Publisher:
    """The events subscriber ``publish`` adds: appends each event to the broker's stream."""

    def __init__(self, app: App, maxlen: int) -> None:
        self._app = app
        self.maxlen = maxlen

    async def __call__(self, event: JobEvent) -> None:
        await self._app.broker.stream_add(STREAM, encode(event), maxlen=self.maxlen)

    def stop(self) -> None:
        """Publish no more (unsubscribe)."""
        self._app.events.unsubscribe(self)


def publish(app: App, *, maxlen: int = 10_000, kinds: Iterable[EventKind | str] = ()) -> Publisher:
    """Publish ``app``'s job events of ``kinds`` (every kind when empty) to the broker, keeping
    about the newest ``maxlen`` (an int > 0). Call it in each process whose events should be
    seen (the app module, imported by workers and web processes alike, is the place). Returns
    the subscriber (``stop()`` ends it). ``TypeError``/``ValueError`` for bad arguments."""
    _check_app(app)
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen <= 0:
        raise ValueError(f"maxlen must be an int > 0, got {maxlen!r}")
    return app.events.subscribe(Publisher(app, maxlen), kinds)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event handed to a consumer: ``ack()`` once it is handled, or it comes again after
    ``claim_after`` seconds. ``id`` is the stream entry's id."""

    id: str
    event: JobEvent
    group: str
    broker: Broker

    async def ack(self) -> None:
        await self.broker.stream_ack(STREAM, self.group, [self.id])


async def subscribe(
    app: App,
    *,
    group: str,
    consumer: str | None = None,
    batch: int = 100,
    claim_after: float = 30.0,
    poll: float = 0.5,
) -> AsyncGenerator[Delivery, None]:
    """Audit events for ``consumer`` (default: host and process id) of ``group``, for ever,
    oldest first; each must be acknowledged (``Delivery.ack``). Reads up to ``batch`` at a time
    and, when none came, waits ``poll`` seconds (it polls: no connection is held blocking).
    Entries that do not decode are logged and acknowledged (they would never decode). Raises
    ``TypeError``/``ValueError`` for bad arguments at the first iteration, and the broker's
    errors as they come."""
    _check_app(app)
    group, consumer = (
        _name("group", group),
        _name("consumer", _default_consumer() if consumer is None else consumer),
    )
    for name, value in (("batch", batch), ("claim_after", claim_after), ("poll", poll)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not isinstance(batch, int):
        raise ValueError(f"batch must be an int, got {batch!r}")
    broker = app.broker
    while True:
        got = await broker.stream_read(
            STREAM, group, consumer, count=batch, claim_after=claim_after
        )
        if not got:
            await anyio.sleep(poll)
        for entry_id, data in got:
            try:
                event = decode(data)
            except ValueError as exc:
                log.warning("audit entry %s is not readable (%s); acknowledged", entry_id, exc)
                await broker.stream_ack(STREAM, group, [entry_id])
                continue
            yield Delivery(entry_id, event, group, broker)


async def consume(
    app: App,
    handler: Callable[[JobEvent], Awaitable[None]],
    *,
    group: str,
    consumer: str | None = None,
    claim_after: float = 30.0,
    poll: float = 0.5,
) -> None:
    """The callback form of ``subscribe``: ``await handler(event)`` for each event, for ever,
    acknowledging it when the handler returns. A handler that raises leaves its event
    unacknowledged (delivered again after ``claim_after`` seconds) and the error propagates."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {type(handler).__name__}")
    events = subscribe(app, group=group, consumer=consumer, claim_after=claim_after, poll=poll)
    async for delivery in events:
        await handler(delivery.event)
        await delivery.ack()


def _check_app(app: object) -> None:
    if not isinstance(app, App):
        raise TypeError(f"expected a taskit App, got {type(app).__name__}")


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str, got {value!r}")
    return value


def _default_consumer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
