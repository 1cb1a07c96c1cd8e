"""Unit tests of taskit.config: Settings validation, the environment, URL redaction."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from taskit.config import Settings, redact_url
from taskit.errors import ConfigurationError


# -- Settings ----------------------------------------------------------------------------------
def test_defaults() -> None:
    settings = Settings()

    assert settings.broker_url == "memory://"
    assert settings.default_queue == "default"
    assert (settings.max_retries, settings.backoff, settings.job_timeout) == (3, 1.0, None)
    assert (settings.visibility_timeout, settings.result_ttl) == (30.0, 86400.0)
    assert (settings.concurrency, settings.sync_concurrency) == (10, 10)
    assert (settings.grace_period, settings.reaper_interval) == (10.0, 5.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("default_queue", ""),
        ("max_retries", -1),
        ("backoff", -0.1),
        ("backoff", math.nan),
        ("concurrency", 0),
        ("sync_concurrency", 0),
        ("grace_period", -1.0),
        ("result_ttl", -1.0),
        ("visibility_timeout", 0.0),
        ("visibility_timeout", -5.0),
        ("visibility_timeout", math.nan),
        ("reaper_interval", 0.0),
        ("job_timeout", 0.0),
        ("job_timeout", -1.0),
    ],
)
def test_an_invalid_setting_raises_an_error_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):
        Settings(**{field: value})


def test_configuration_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Settings(concurrency=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", 0),
        ("backoff", 0.0),
        ("grace_period", 0.0),
        ("result_ttl", 0.0),
        ("concurrency", 1),
        ("job_timeout", 0.001),
    ],
)
def test_boundary_values_are_accepted(field: str, value: Any) -> None:
    assert getattr(Settings(**{field: value}), field) == value


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.concurrency = 5  # type: ignore[misc]


def test_replace_returns_a_validated_copy() -> None:
    settings = Settings(concurrency=4)

    changed = settings.replace(default_queue="emails")

    assert (changed.default_queue, changed.concurrency) == ("emails", 4)
    assert settings.default_queue == "default"
    with pytest.raises(ConfigurationError, match="concurrency"):
        settings.replace(concurrency=0)


# -- from_env ----------------------------------------------------------------------------------
def test_from_env_without_variables_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_reads_every_variable() -> None:
    environ = {
        "TASKIT_BROKER_URL": "redis://localhost:6379/1",
        "TASKIT_DEFAULT_QUEUE": "emails",
        "TASKIT_MAX_RETRIES": "7",
        "TASKIT_BACKOFF": "0.5",
        "TASKIT_JOB_TIMEOUT": "120",
        "TASKIT_VISIBILITY_TIMEOUT": "45.5",
        "TASKIT_RESULT_TTL": "3600",
        "TASKIT_CONCURRENCY": "20",
        "TASKIT_SYNC_CONCURRENCY": "4",
        "TASKIT_GRACE_PERIOD": "2.5",
        "TASKIT_REAPER_INTERVAL": "1",
        "UNRELATED": "ignored",
    }

    assert Settings.from_env(environ) == Settings(
        broker_url="redis://localhost:6379/1",
        default_queue="emails",
        max_retries=7,
        backoff=0.5,
        job_timeout=120.0,
        visibility_timeout=45.5,
        result_ttl=3600.0,
        concurrency=20,
        sync_concurrency=4,
        grace_period=2.5,
        reaper_interval=1.0,
    )


def test_from_env_strips_whitespace_and_skips_blank_values() -> None:
    settings = Settings.from_env({"TASKIT_CONCURRENCY": " 12 ", "TASKIT_DEFAULT_QUEUE": "   "})

    assert (settings.concurrency, settings.default_queue) == (12, "default")


@pytest.mark.parametrize("raw", ["none", "None", " NONE ", "0"])
def test_from_env_job_timeout_none_or_zero_means_no_timeout(raw: str) -> None:
    settings = Settings.from_env({"TASKIT_JOB_TIMEOUT": raw})

    assert settings.job_timeout is None


def test_from_env_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"TASKIT_CONCURRENCY": "12"}, concurrency=3, default_queue="x")

    assert (settings.concurrency, settings.default_queue) == (3, "x")


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKIT_DEFAULT_QUEUE", "from-os-environ")

    assert Settings.from_env().default_queue == "from-os-environ"
    assert Settings.from_env({}).default_queue == "default"


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TASKIT_MAX_RETRIES", "three"),
        ("TASKIT_MAX_RETRIES", "1.5"),
        ("TASKIT_CONCURRENCY", "10x"),
        ("TASKIT_SYNC_CONCURRENCY", "1e3"),
        ("TASKIT_BACKOFF", "fast"),
        ("TASKIT_JOB_TIMEOUT", "soon"),
        ("TASKIT_VISIBILITY_TIMEOUT", "30s"),
        ("TASKIT_RESULT_TTL", "1 day"),
        ("TASKIT_GRACE_PERIOD", "--1"),
        ("TASKIT_REAPER_INTERVAL", "five"),
    ],
)
def test_from_env_names_a_variable_that_does_not_parse(variable: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=variable) as caught:
        Settings.from_env({variable: raw})

    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "raw", "field"),
    [
        ("TASKIT_CONCURRENCY", "0", "concurrency"),
        ("TASKIT_VISIBILITY_TIMEOUT", "-1", "visibility_timeout"),
        ("TASKIT_BACKOFF", "nan", "backoff"),
    ],
)
def test_from_env_rejects_a_value_that_parses_but_is_invalid(
    variable: str, raw: str, field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field):
        Settings.from_env({variable: raw})


# -- redact_url --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://user:s3cret@cache.local:6379/0", "redis://user:***@cache.local:6379/0"),
        ("rediss://:s3cret@cache.local/2", "rediss://:***@cache.local/2"),
        (
            "redis://user:p%40ss@host:1/0?ssl_cert_reqs=none",
            "redis://user:***@host:1/0?ssl_cert_reqs=none",
        ),
    ],
)
def test_redact_url_hides_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "s3cret" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    ["memory://", "redis://localhost:6379/0", "redis://user@host:6379", "unix:///tmp/redis.sock"],
)
def test_redact_url_leaves_a_url_without_password_alone(url: str) -> None:
    assert redact_url(url) == url


def test_redact_url_does_not_raise_on_an_unparseable_url() -> None:
    assert "s3cret" not in redact_url("redis://user:s3cret@[::1/0")


def test_redact_url_survives_a_bad_port() -> None:
    assert "s3cret" not in redact_url("redis://user:s3cret@host:notaport/0")


def test_redact_url_keeps_an_ipv6_host_intact() -> None:
    assert redact_url("redis://:s3cret@[::1]:6379/0") == "redis://:***@[::1]:6379/0"


def test_redact_url_hides_a_password_query_parameter() -> None:
    assert "s3cret" not in redact_url("redis://localhost:6379/0?password=s3cret")


@pytest.mark.parametrize(
    ("field", "value"),
    [("concurrency", "3"), ("backoff", "1.0"), ("max_retries", True), ("default_queue", "  ")],
)
def test_a_setting_of_the_wrong_type_is_a_configuration_error_naming_it(
    field: str, value: object
) -> None:
    with pytest.raises(ConfigurationError, match=field) as caught:
        Settings(**{field: value})
    assert caught.value.setting == field


def test_from_env_names_the_variable_of_a_value_that_parses_but_is_invalid() -> None:
    with pytest.raises(ConfigurationError, match="TASKIT_CONCURRENCY: concurrency must be >= 1"):
        Settings.from_env({"TASKIT_CONCURRENCY": "0"})


# -- broker_timeout ------------------------------------------------------------------------------
def test_broker_timeout_defaults_to_a_few_seconds_and_reads_its_variable() -> None:
    assert Settings().broker_timeout == 5.0
    assert Settings.from_env({"TASKIT_BROKER_TIMEOUT": "0.75"}).broker_timeout == 0.75


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_broker_timeout_must_be_a_finite_positive_number(value: float) -> None:
    with pytest.raises(ConfigurationError, match="broker_timeout"):
        Settings(broker_timeout=value)
    with pytest.raises(ConfigurationError, match="TASKIT_BROKER_TIMEOUT"):
        Settings.from_env({"TASKIT_BROKER_TIMEOUT": str(value)})


def test_an_app_gives_its_redis_broker_the_broker_timeout() -> None:
    from taskit import App
    from taskit.broker.redis import RedisBroker

    app = App("redis://127.0.0.1:1/0", settings=Settings(broker_timeout=0.25))
    assert isinstance(app.broker, RedisBroker)
    assert app.broker._conn.timeout == 0.25
    assert RedisBroker("redis://127.0.0.1:1/0")._conn.timeout == 5.0  # built by hand


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_a_redis_broker_refuses_a_timeout_that_bounds_nothing(value: float) -> None:
    from taskit.broker.redis import RedisBroker

    with pytest.raises(ConfigurationError, match="timeout"):
        RedisBroker("redis://127.0.0.1:1/0", timeout=value)
