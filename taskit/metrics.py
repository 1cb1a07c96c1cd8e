"""Prometheus metrics, from job events and the broker's counts. Needs the ``prometheus`` extra
(``pip install 'taskit[prometheus]'``); without it, only ``Metrics(...)`` fails, with a
``ConfigurationError`` saying what to install, and nothing else in taskit notices.

    taskit worker myapp:app --metrics-port 9100

| metric                                      | type      | labels             | source        |
|---------------------------------------------|-----------|--------------------|---------------|
| ``taskit_jobs_processed_total``             | counter   | task, outcome      | this worker   |
| ``taskit_job_duration_seconds``             | histogram | task               | this worker   |
| ``taskit_job_failures_total``               | counter   | task, error_type   | this worker   |
| ``taskit_job_retries_total``                | counter   | task               | this worker   |
| ``taskit_queue_depth``                      | gauge     | queue              | the broker    |
| ``taskit_queue_scheduled``                  | gauge     | queue              | the broker    |
| ``taskit_dead_letters``                     | gauge     | queue              | the broker    |
| ``taskit_jobs_running``                     | gauge     | queue              | the broker    |
| ``taskit_queue_paused``                     | gauge     | queue              | the broker    |
| ``taskit_workers``                          | gauge     |                    | live workers  |
| ``taskit_limit_running``                    | gauge     | limit, key         | the broker    |
| ``taskit_limit_waiting``                    | gauge     | limit, key         | the broker    |

Counters count what this process's worker did (sum them over workers); gauges describe the whole
broker, so every worker reports the same values (take ``max``, not ``sum``, across workers).
``taskit`` is the default prefix of every name: ``prefix=`` (or the ``metrics_prefix`` setting,
``TASKIT_METRICS_PREFIX``, ``taskit worker --metrics-prefix``) replaces it, as in
``myapp_jobs_processed_total``.
The limit gauges (flow control, ``taskit.limiting``) count running jobs and jobs held back
waiting for a slot, per limit key (``key`` is the limit key, ``exports:acme``, or the name of a
global limit), for the ``LIMIT_TOP_KEYS`` busiest keys of each limit the broker defines: the label
count stays bounded however many keys there are. A broker that stores no limits has none.
``outcome`` is one of completed, failed, retried, dead_lettered, cancelled, requeued. A failure
is any attempt that did not succeed: ``failed``, ``retried`` (except a requested ``Retry``) and
``dead_lettered``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from taskit._outage import Outage
from taskit.config import Settings
from taskit.errors import ConfigurationError, TaskitError
from taskit.events import EventKind, Events, JobEvent

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = ["LIMIT_TOP_KEYS", "Metrics", "Observed", "stop_serving"]

log = logging.getLogger(__name__)

#: Seconds between two refreshes of the broker gauges.
REFRESH_INTERVAL = 5.0
#: Keys per limit in the limit gauges (the busiest ones), bounding their label count.
LIMIT_TOP_KEYS = 10
_OUTCOMES = (
    EventKind.COMPLETED,
    EventKind.FAILED,
    EventKind.RETRIED,
    EventKind.DEAD_LETTERED,
    EventKind.CANCELLED,
    EventKind.REQUEUED,
)
_FAILURES = (EventKind.FAILED, EventKind.RETRIED, EventKind.DEAD_LETTERED)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(
            f"metrics need prometheus_client ({exc}): pip install 'taskit[prometheus]'"
        ) from None
    return prometheus_client


class Observed(Protocol):
    """What metrics are taken from (an ``App`` is one): its job ``events`` and its ``broker``."""

    @property
    def events(self) -> Events: ...
    @property
    def broker(self) -> Broker: ...


class Metrics:
    """Taskit's metrics for ``app`` (an App, or anything with its ``events`` and ``broker``), in
    ``registry`` (a new ``CollectorRegistry`` by default; pass ``prometheus_client.REGISTRY`` to
    add them to the process-wide one), each name starting with ``prefix`` (default: the
    ``metrics_prefix`` setting of ``app``'s settings, if it has any, else ``taskit``; a bad one
    raises ``ConfigurationError``). Subscribes to the job events at once; ``refresh`` (or
    ``refresh_forever``) updates the broker gauges from the broker ``app`` had when given."""

    def __init__(self, app: Observed, registry: Any = None, *, prefix: str | None = None) -> None:
        prom = _prometheus()
        if prefix is None:
            settings = getattr(app, "settings", None)
            prefix = settings.metrics_prefix if isinstance(settings, Settings) else "taskit"
        else:  # held to the setting's rule
            prefix = Settings(metrics_prefix=prefix).metrics_prefix
        self.prefix = prefix
        self.broker = app.broker
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        r, p = self.registry, prefix
        self.processed = prom.Counter(
            f"{p}_jobs_processed", "Jobs settled by this worker.", ["task", "outcome"], registry=r
        )
        self.duration = prom.Histogram(
            f"{p}_job_duration_seconds", "Run time of each attempt.", ["task"], registry=r
        )
        self.failures = prom.Counter(
            f"{p}_job_failures", "Failed attempts by error type.", ["task", "error_type"],
            registry=r,
        )  # fmt: skip
        self.retries = prom.Counter(f"{p}_job_retries", "Retries.", ["task"], registry=r)
        gauge = prom.Gauge
        self.depth = gauge(f"{p}_queue_depth", "Jobs ready to run.", ["queue"], registry=r)
        self.scheduled = gauge(
            f"{p}_queue_scheduled", "Jobs waiting for their time.", ["queue"], registry=r
        )
        self.dead = gauge(f"{p}_dead_letters", "Dead-lettered jobs.", ["queue"], registry=r)
        self.running = gauge(f"{p}_jobs_running", "Jobs running now.", ["queue"], registry=r)
        self.paused = gauge(
            f"{p}_queue_paused", "1 while the queue is paused.", ["queue"], registry=r
        )
        self.workers = gauge(f"{p}_workers", "Live workers (registry records).", registry=r)
        self.limit_running = gauge(
            f"{p}_limit_running", "Running jobs per limit key (busiest keys).", ["limit", "key"],
            registry=r,
        )  # fmt: skip
        self.limit_waiting = gauge(
            f"{p}_limit_waiting", "Jobs held back for a slot per limit key (busiest keys).",
            ["limit", "key"], registry=r,
        )  # fmt: skip
        self._limits_stored = True  # until the broker says it stores none
        app.events.subscribe(self.observe, _OUTCOMES)

    def observe(self, event: JobEvent) -> None:
        """Count one settled job (the event subscriber)."""
        task, kind = event.task, event.kind
        self.processed.labels(task, kind.value).inc()
        if event.duration is not None:
            self.duration.labels(task).observe(event.duration)
        if kind is EventKind.RETRIED:
            self.retries.labels(task).inc()
        if kind in _FAILURES and not (kind is EventKind.RETRIED and event.error_type == "Retry"):
            self.failures.labels(task, event.error_type or "unknown").inc()

    async def refresh(self) -> None:
        """Read the queue counts and live workers from the broker into the gauges."""
        stats = await self.broker.stats()
        for queue, s in stats.items():
            self.depth.labels(queue).set(s.queued)
            self.scheduled.labels(queue).set(s.scheduled)
            self.dead.labels(queue).set(s.dead)
            self.running.labels(queue).set(s.running)
        paused = await self.broker.paused_queues()
        for queue in paused | stats.keys():
            self.paused.labels(queue).set(1 if queue in paused else 0)
        self.workers.set(len(await self.broker.live()))
        if self._limits_stored:
            await self._refresh_limits()

    async def _refresh_limits(self) -> None:
        """The limit gauges, rebuilt: a key that left the busiest ones leaves the gauges."""
        try:
            names = list(await self.broker.limit_specs())
        except NotImplementedError:  # a broker without flow control: no limit gauges
            self._limits_stored = False
            return
        usages = [await self.broker.limit_usage(n, top=LIMIT_TOP_KEYS) for n in names]
        self.limit_running.clear()
        self.limit_waiting.clear()
        for usage in usages:
            for key, count in usage.running.items():
                self.limit_running.labels(usage.name, key).set(count)
            for key, count in usage.waiting.items():
                self.limit_waiting.labels(usage.name, key).set(count)

    async def refresh_forever(self, interval: float = REFRESH_INTERVAL) -> None:
        """``refresh`` every ``interval`` seconds until cancelled; broker errors are logged
        once per outage and retried with backoff (``taskit._outage``)."""
        outage = Outage("refreshing the metrics gauges", log)
        while True:
            pause = interval
            try:
                await self.refresh()
                outage.recovered()
            except (TaskitError, OSError) as exc:
                pause = max(pause, outage.failed(exc))
            await anyio.sleep(pause)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve ``/metrics`` over HTTP on ``addr:port`` from a daemon thread; returns the
        server (``stop_serving(server)`` stops it at once). ``OSError`` if the port is taken."""
        server, _thread = _prometheus().start_http_server(port, addr, registry=self.registry)
        return server

    def text(self) -> str:
        """The metrics in the Prometheus text format."""
        data: bytes = _prometheus().generate_latest(self.registry)
        return data.decode()


def stop_serving(server: Any, timeout: float = 1.0) -> None:
    """Stop a server of ``Metrics.serve`` without waiting out its poll: ``shutdown()`` alone
    returns only at ``serve_forever``'s next half-second poll, which a stopping worker would
    wait for; a connection wakes the poll at once."""
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    host, port = server.server_address[:2]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    for _ in range(int(timeout / 0.05)):
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.05).close()
        stopper.join(0.05)
        if not stopper.is_alive():
            return
