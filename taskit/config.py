"""Settings: one frozen object, built once per App, the only reader of ``TASKIT_*`` variables.

Nothing here runs at import time: ``Settings.from_env()`` reads the environment when an App is
built, and every field can be overridden in code (``Settings(...)`` or ``settings.replace(...)``).

| variable                      | field               | default      |
|-------------------------------|---------------------|--------------|
| ``TASKIT_BROKER_URL``         | broker_url          | ``memory://``|
| ``TASKIT_DEFAULT_QUEUE``      | default_queue       | ``default``  |
| ``TASKIT_MAX_RETRIES``        | max_retries         | 3            |
| ``TASKIT_BACKOFF``            | backoff             | 1.0 s        |
| ``TASKIT_JOB_TIMEOUT``        | job_timeout         | none         |
| ``TASKIT_VISIBILITY_TIMEOUT`` | visibility_timeout  | 30 s         |
| ``TASKIT_RESULT_TTL``         | result_ttl          | 86400 s      |
| ``TASKIT_CONCURRENCY``        | concurrency         | 10           |
| ``TASKIT_SYNC_CONCURRENCY``   | sync_concurrency    | 10           |
| ``TASKIT_GRACE_PERIOD``       | grace_period        | 10 s         |
| ``TASKIT_REAPER_INTERVAL``    | reaper_interval     | 5 s          |
| ``TASKIT_HEARTBEAT_INTERVAL`` | heartbeat_interval  | 5 s          |
| ``TASKIT_MAX_PAYLOAD_BYTES``  | max_payload_bytes   | 1048576      |
| ``TASKIT_BROKER_TIMEOUT``     | broker_timeout      | 5 s          |
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from taskit.errors import ConfigurationError

__all__ = ["Settings", "redact_url"]

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
    "grace_period": ("TASKIT_GRACE_PERIOD", float),
    "reaper_interval": ("TASKIT_REAPER_INTERVAL", float),
    "heartbeat_interval": ("TASKIT_HEARTBEAT_INTERVAL", float),
    "max_payload_bytes": ("TASKIT_MAX_PAYLOAD_BYTES", int),
    "broker_timeout": ("TASKIT_BROKER_TIMEOUT", float),
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of an App and its workers. Durations are float seconds.

    ``visibility_timeout`` is the lease: a reserved job whose worker neither settles nor extends it
    within that time is handed to another worker. Workers extend their leases every third of it.
    ``heartbeat_interval``: how often a worker renews its registry record, which expires after
    three intervals without one (``taskit check`` then counts the worker as gone).
    ``max_payload_bytes``: the largest encoded arguments a job may carry; a bigger one is
    refused at enqueue (``PayloadTooLargeError``) and nothing is stored.
    ``broker_timeout``: the longest any broker call waits to connect or for a reply (a blocking
    wait: its own length plus this). Past it the call raises ``BrokerConnectionError`` if the
    command was not sent, ``BrokerOutcomeUnknownError`` if it was (it may have run).
    """

    broker_url: str = "memory://"
    default_queue: str = "default"
    max_retries: int = 3
    backoff: float = 1.0
    job_timeout: float | None = None
    visibility_timeout: float = 30.0
    result_ttl: float = 86400.0
    concurrency: int = 10
    sync_concurrency: int = 10
    grace_period: float = 10.0
    reaper_interval: float = 5.0
    heartbeat_interval: float = 5.0
    max_payload_bytes: int = 1_048_576
    broker_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("broker_url", "default_queue"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise _invalid(name, f"{name} must be a non-empty string, got {value!r}")
        for name, (kind, low, exclusive) in _RULES.items():
            value = getattr(self, name)
            if value is None and name == "job_timeout":
                continue
            allowed = int if kind is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed):
                what = "an int" if kind is int else "a number of seconds"
                raise _invalid(name, f"{name} must be {what}, got {value!r}")
            if not (value > low if exclusive else value >= low):  # NaN fails both
                bound = f"> {low}" if exclusive else f">= {low}"
                raise _invalid(name, f"{name} must be {bound}, got {value!r}")
        if self.broker_timeout == float("inf"):  # a bound that never ends is no bound
            raise _invalid("broker_timeout", "broker_timeout must be finite, got inf")

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


# field: (type, lowest value, whether the lowest itself is excluded)
_RULES: dict[str, tuple[type, float, bool]] = {
    "max_retries": (int, 0, False),
    "backoff": (float, 0, False),
    "job_timeout": (float, 0, True),
    "visibility_timeout": (float, 0, True),
    "result_ttl": (float, 0, False),
    "concurrency": (int, 1, False),
    "sync_concurrency": (int, 1, False),
    "grace_period": (float, 0, False),
    "reaper_interval": (float, 0, True),
    "heartbeat_interval": (float, 0, True),
    "max_payload_bytes": (int, 1, False),
    "broker_timeout": (float, 0, True),
}


def _invalid(setting: str, message: str) -> ConfigurationError:
    return ConfigurationError(message, setting=setting)


def redact_url(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query) replaced by ``***``,
    safe to log. A URL that does not parse is not echoed at all."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = _PASSWORD_QUERY.sub(r"\1***", parts.query)
    if password is None and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_PASSWORD_QUERY = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)
