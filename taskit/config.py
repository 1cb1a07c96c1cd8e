"""Settings: one frozen object, built once per App, the only reader of ``TASKIT_*`` variables.

Nothing here runs at import time: ``Settings.from_env()`` reads the environment when an App is
built, and every field can be overridden in code (``Settings(...)`` or ``settings.replace(...)``).

| variable                      | field               | default      |
|-------------------------------|---------------------|--------------|
| ``TASKIT_BROKER_URL``         | broker_url          | none (below) |
| ``TASKIT_DEFAULT_QUEUE``      | default_queue       | ``default``  |
| ``TASKIT_MAX_RETRIES``        | max_retries         | 3            |
| ``TASKIT_BACKOFF``            | backoff             | 1.0 s        |
| ``TASKIT_JOB_TIMEOUT``        | job_timeout         | none         |
| ``TASKIT_VISIBILITY_TIMEOUT`` | visibility_timeout  | 30 s         |
| ``TASKIT_RESULT_TTL``         | result_ttl          | 600 s        |
| ``TASKIT_CONCURRENCY``        | concurrency         | 10           |
| ``TASKIT_SYNC_CONCURRENCY``   | sync_concurrency    | 10           |
| ``TASKIT_PREFETCH``           | prefetch            | 0            |
| ``TASKIT_GRACE_PERIOD``       | grace_period        | 10 s         |
| ``TASKIT_REAPER_INTERVAL``    | reaper_interval     | 5 s          |
| ``TASKIT_HEARTBEAT_INTERVAL`` | heartbeat_interval  | 5 s          |
| ``TASKIT_MAX_PAYLOAD_BYTES``  | max_payload_bytes   | 1048576      |
| ``TASKIT_REDIS_PREFIX``       | redis_prefix        | ``taskit``   |
| ``TASKIT_BROKER_TIMEOUT``     | broker_timeout      | 5 s          |
| ``TASKIT_METRICS_PREFIX``     | metrics_prefix      | ``taskit``   |
| ``TASKIT_SCHEDULE_JSON``      | schedule_json       | none         |
| ``TASKIT_PROGRESS_INTERVAL``  | progress_interval   | 1 s          |
| ``TASKIT_LIMITS_JSON``        | limits_json         | none         |

Every number is checked for type and range when a ``Settings`` is built (``bool`` is not an
int; durations are finite and at most ``MAX_SECONDS``), and so is the broker URL (see
``taskit._urls``): a bad value raises ``ConfigurationError`` naming the setting (and, from the
environment, the variable).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskit._urls import check_prefix, parse_broker_url, redact_url
from taskit.errors import ConfigurationError

__all__ = [
    "DEFAULT_RESULT_TTL",
    "MAX_COUNT",
    "MAX_SECONDS",
    "Settings",
    "check_number",
    "redact_url",
]

#: The longest duration a setting takes (ten years): past it is surely a typo, and Redis expiry
#: times and datetimes must still hold ``now + duration``.
MAX_SECONDS = 10 * 365 * 86400.0
#: The largest count a setting takes (concurrency, retries, ...): 32-bit signed.
MAX_COUNT = 2**31 - 1
#: Seconds a finished job (and its result) stays readable when neither its task, its call nor
#: ``TASKIT_RESULT_TTL`` says otherwise: ten minutes, as SAQ's and Dramatiq's results (RQ: 500 s).
#: Long enough for anyone awaiting the job to read it; short enough that a Redis holds the
#: records of a busy App: about 0.5 GB at a steady 1,000 jobs/s (docs/performance.md, "What
#: finished jobs keep"), where a day held some 75 GB. Dead letters do not expire.
DEFAULT_RESULT_TTL = 600.0

_ENV = {
    "broker_url": ("TASKIT_BROKER_URL", str),
    "default_queue": ("TASKIT_DEFAULT_QUEUE", str),
    "max_retries": ("TASKIT_MAX_RETRIES", int),
    "backoff": ("TASKIT_BACKOFF", float),
    "job_timeout": ("TASKIT_JOB_TIMEOUT", float),
    "visibility_timeout": ("TASKIT_VISIBILITY_TIMEOUT", float),
    "result_ttl": ("TASKIT_RESULT_TTL", float),
    "concurrency": ("TASKIT_CONCURRENCY", int),
    "sync_concurrency": ("TASKIT_SYNC_CONCURRENCY", int),
    "prefetch": ("TASKIT_PREFETCH", int),
    "grace_period": ("TASKIT_GRACE_PERIOD", float),
    "reaper_interval": ("TASKIT_REAPER_INTERVAL", float),
    "heartbeat_interval": ("TASKIT_HEARTBEAT_INTERVAL", float),
    "max_payload_bytes": ("TASKIT_MAX_PAYLOAD_BYTES", int),
    "redis_prefix": ("TASKIT_REDIS_PREFIX", str),
    "broker_timeout": ("TASKIT_BROKER_TIMEOUT", float),
    "metrics_prefix": ("TASKIT_METRICS_PREFIX", str),
    "schedule_json": ("TASKIT_SCHEDULE_JSON", str),
    "progress_interval": ("TASKIT_PROGRESS_INTERVAL", float),
    "limits_json": ("TASKIT_LIMITS_JSON", str),
}
#: A Prometheus metric name's first part: what ``metrics_prefix`` may be.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of an App and its workers. Durations are float seconds.

    ``visibility_timeout`` is the lease: a reserved job whose worker neither settles nor extends it
    within that time is handed to another worker. Workers extend their leases every third of it.
    ``heartbeat_interval``: how often a worker renews its presence record, which expires after
    three intervals without one (``taskit check`` then counts the worker as gone).
    ``max_payload_bytes``: the largest encoded arguments a job may carry; a bigger one is
    refused at enqueue (``PayloadTooLargeError``) and nothing is stored.
    ``broker_timeout``: the longest any broker call waits to connect or for a reply (a blocking
    wait: its own length plus this). Past it the call raises ``BrokerConnectionError`` if the
    command was not sent, ``BrokerOutcomeUnknownError`` if it was (it may have run).

    ``prefetch``: how many reserved jobs a worker may hold waiting beyond its idle runners (0,
    the default: it reserves only for idle runners). Held jobs start without a round trip to
    the broker when a runner frees up; they are leased (the broker counts them as running) and
    started after a pause of their queue or a limit set to 0 (docs/configuration.md, "Prefetch").

    ``result_ttl``: seconds a job that ended COMPLETED, FAILED or CANCELLED stays readable
    (``get``, waiting for its result, the listings), unless its task or call gives its own
    ``result_ttl``; also how long a workflow's record outlives its last node. Dead letters do
    not expire. Default ``DEFAULT_RESULT_TTL``.

    ``broker_url``: where jobs wait (``taskit._urls``); None (the default): nothing chose one,
    so an App uses ``memory://`` and the ``taskit`` commands a SQLite file (docs/configuration.md,
    "The default broker").

    ``redis_prefix``: the key prefix (and Cluster hash tag) of a Redis broker that is not given
    one in its constructor or its URL (``?prefix=``).

    ``metrics_prefix``: the first part of every Prometheus metric name (``taskit_queue_depth``):
    letters, digits, ``_`` and ``:``, not starting with a digit. ``schedule_json``: periodic
    schedules as JSON text, in the schedules file's JSON format (``taskit.scheduler``), added
    wherever the schedules file is loaded (``taskit worker``, ``taskit scheduler``).

    ``progress_interval``: how often a worker stores the progress its running jobs reported
    (``taskit.report_progress``), all of them in one broker call; a job's last report is also
    stored before it settles.

    ``limits_json``: limit definitions as JSON text, an object of name to definition
    (``taskit.limiting.parse_limits_json``), read when an App is built; for a name the code
    declares too (``App.limit``), this one wins.

    Brokers take the settings they use (``result_ttl``, ``redis_prefix``, ``broker_timeout``) from
    the App they are
    given to, for every option not passed to the broker explicitly (``Broker.configure``).
    """

    broker_url: str | None = None
    default_queue: str = "default"
    max_retries: int = 3
    backoff: float = 1.0
    job_timeout: float | None = None
    visibility_timeout: float = 30.0
    result_ttl: float = DEFAULT_RESULT_TTL
    concurrency: int = 10
    sync_concurrency: int = 10
    prefetch: int = 0
    grace_period: float = 10.0
    reaper_interval: float = 5.0
    heartbeat_interval: float = 5.0
    max_payload_bytes: int = 1_048_576
    redis_prefix: str = "taskit"
    broker_timeout: float = 5.0
    metrics_prefix: str = "taskit"
    schedule_json: str | None = None
    progress_interval: float = 1.0
    limits_json: str | None = None

    def __post_init__(self) -> None:
        for name in ("broker_url", "default_queue"):
            value = getattr(self, name)
            if value is None and name == "broker_url":
                continue
            if not isinstance(value, str) or not value.strip():
                raise _invalid(name, f"{name} must be a non-empty string, got {value!r}")
        for name in _RULES:
            value = getattr(self, name)
            if value is None and name == "job_timeout":
                continue
            check_number(name, value)
        try:
            if self.broker_url is not None:
                parse_broker_url(self.broker_url)
        except ConfigurationError as exc:
            raise _invalid("broker_url", str(exc)) from None
        if not isinstance(self.metrics_prefix, str) or not _METRIC_NAME.fullmatch(
            self.metrics_prefix
        ):
            raise _invalid(
                "metrics_prefix",
                "metrics_prefix must be letters, digits, '_' or ':', not starting with a digit, "
                f"got {self.metrics_prefix!r}",
            )
        if self.schedule_json is not None and not isinstance(self.schedule_json, str):
            raise _invalid(
                "schedule_json", f"schedule_json must be JSON text, got {self.schedule_json!r}"
            )
        if self.limits_json is not None and not isinstance(self.limits_json, str):
            raise _invalid(
                "limits_json", f"limits_json must be JSON text, got {self.limits_json!r}"
            )
        try:
            check_prefix(self.redis_prefix, "redis_prefix")
        except ConfigurationError as exc:
            raise _invalid("redis_prefix", str(exc)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TASKIT_*`` variables from ``environ`` (default ``os.environ``), then
        ``overrides``. A variable that does not parse raises ``ConfigurationError`` naming it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, (var, kind) in _ENV.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            if field == "job_timeout" and raw.strip().lower() in ("none", "0"):
                values[field] = None
                continue
            try:
                if kind is not str and (not raw.isascii() or "_" in raw):
                    # int() and float() take '1_000' and non-ASCII digits ('\u0663'): not what
                    # an operator means to type, and not what other tools read
                    raise ValueError(raw)
                values[field] = kind(raw.strip())
            except ValueError:
                raise ConfigurationError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
        values.update(overrides)
        try:
            return cls(**values)
        except ConfigurationError as exc:
            setting = exc.setting
            if setting in _ENV and setting not in overrides and setting in values:
                raise ConfigurationError(f"{_ENV[setting][0]}: {exc}", setting=setting) from None
            raise

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)


def check_number(name: str, value: object) -> None:
    """Check ``value`` against the rule of setting ``name`` (type, then range); raise
    ``ConfigurationError`` naming ``name``. Also used for constructor arguments that override a
    setting (``Worker(concurrency=...)``), so both are held to one rule."""
    kind, low, exclusive, high = _RULES[name]
    allowed = int if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        what = "an int" if kind is int else "a number of seconds"
        raise _invalid(name, f"{name} must be {what}, got {value!r}")
    if not (value > low if exclusive else value >= low):  # NaN fails both
        bound = f"> {low}" if exclusive else f">= {low}"
        raise _invalid(name, f"{name} must be {bound}, got {value!r}")
    if not value <= high:  # inf too
        raise _invalid(name, f"{name} must be <= {high:g}, got {value!r}")


# field: (type, lowest value, whether the lowest itself is excluded, highest value)
_RULES: dict[str, tuple[type, float, bool, float]] = {
    "max_retries": (int, 0, False, MAX_COUNT),
    "backoff": (float, 0, False, MAX_SECONDS),
    "job_timeout": (float, 0, True, MAX_SECONDS),
    "visibility_timeout": (float, 0, True, MAX_SECONDS),
    "result_ttl": (float, 0, False, MAX_SECONDS),
    "concurrency": (int, 1, False, MAX_COUNT),
    "sync_concurrency": (int, 1, False, MAX_COUNT),
    "prefetch": (int, 0, False, MAX_COUNT),
    "grace_period": (float, 0, False, MAX_SECONDS),
    "reaper_interval": (float, 0, True, MAX_SECONDS),
    "heartbeat_interval": (float, 0, True, MAX_SECONDS),
    # Redis holds at most 512 MiB in one string.
    "max_payload_bytes": (int, 1, False, 512 * 1024 * 1024),
    "broker_timeout": (float, 0, True, MAX_SECONDS),
    "progress_interval": (float, 0, True, MAX_SECONDS),
}


def _invalid(setting: str, message: str) -> ConfigurationError:
    return ConfigurationError(message, setting=setting)
