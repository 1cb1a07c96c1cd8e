"""Unit tests of taskit.config: Settings validation, the environment, URL redaction."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from taskit.config import Settings, redact_url
from taskit.errors import ConfigurationError


# -- Settings ----------------------------------------------------------------------------------
def test_defaults() -> None:
    settings = Settings()

    assert settings.broker_url is None  # nothing chose one: App() uses memory://, the CLI SQLite
    assert settings.default_queue == "default"
    assert (settings.max_retries, settings.backoff, settings.job_timeout) == (3, 1.0, None)
    assert (settings.visibility_timeout, settings.result_ttl) == (30.0, 600.0)
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
        ("prefetch", -1),
        ("prefetch", 1.5),
        ("prefetch", True),
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
        ("prefetch", 0),
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
        # Python's int()/float() read these; a deployment value should be plain ASCII digits
        ("TASKIT_CONCURRENCY", "1_000"),
        ("TASKIT_MAX_PAYLOAD_BYTES", "\u0663"),  # ARABIC-INDIC DIGIT THREE
        ("TASKIT_MAX_RETRIES", "\uff11"),  # FULLWIDTH DIGIT ONE
        ("TASKIT_BACKOFF", "1_0.5"),
        ("TASKIT_VISIBILITY_TIMEOUT", "\u0663\u0660"),
        ("TASKIT_BROKER_TIMEOUT", "\uff15"),
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


def test_redact_url_hides_the_passwords_of_a_sentinel_url() -> None:
    url = "redis+sentinel://u:s3cret@s1:26379,s2:26379/m?sentinel_password=s3cret2&prefix=x"
    assert (
        redact_url(url)
        == "redis+sentinel://u:***@s1:26379,s2:26379/m?sentinel_password=***&prefix=x"
    )


@pytest.mark.parametrize("mark", ["/", "?", "#", "/?#"])
def test_a_password_with_an_unencoded_delimiter_is_never_shown(mark: str) -> None:
    # urlsplit ends the host at the first '/', '?' or '#': the rest of such a password was read
    # as the path, query or fragment, and the error naming the bad part showed it
    url = f"redis://user:s3{mark}cret@127.0.0.1:6379/0"
    assert redact_url(url) == "redis://user:***@127.0.0.1:6379/0"
    with pytest.raises(ConfigurationError) as caught:
        Settings(broker_url=url)
    assert "cret" not in str(caught.value)
    assert "s3" not in str(caught.value)  # the error named the piece before it as the port


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


# -- every setting, every way in ---------------------------------------------------------------
def test_every_setting_has_an_environment_variable() -> None:
    from taskit.config import _ENV

    assert set(_ENV) == {f.name for f in dataclasses.fields(Settings)}


def test_the_redis_prefix_comes_from_the_environment() -> None:
    settings = Settings.from_env({"TASKIT_REDIS_PREFIX": "shop"})

    assert settings.redis_prefix == "shop"
    assert Settings().redis_prefix == "taskit"


@pytest.mark.parametrize("prefix", ["{shop}", "a}b", ""])
def test_a_bad_redis_prefix_is_refused_naming_it(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="redis_prefix") as caught:
        Settings(redis_prefix=prefix)
    assert caught.value.setting == "redis_prefix"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("result_ttl", math.inf),
        ("result_ttl", 1e300),
        ("visibility_timeout", math.inf),
        ("grace_period", 1e300),
        ("backoff", math.inf),
        ("job_timeout", math.inf),
        ("reaper_interval", 1e12),
        ("heartbeat_interval", math.inf),
        ("concurrency", 2**31),
        ("max_retries", 10**30),
        ("sync_concurrency", 2**40),
        ("max_payload_bytes", 2**40),
    ],
)
def test_a_setting_past_its_range_is_refused_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{field} must be <=") as caught:
        Settings(**{field: value})
    assert caught.value.setting == field


def test_an_infinite_result_ttl_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="TASKIT_RESULT_TTL: result_ttl must be <="):
        Settings.from_env({"TASKIT_RESULT_TTL": "inf"})


# -- broker URLs -------------------------------------------------------------------------------
BAD_URLS = [
    ("redis://h:99999/0", "port '99999'"),
    ("redis://h:abc/0", "port 'abc'"),
    ("redis://h:0/0", "port 0"),
    ("rediss://h:70000/1", "port '70000'"),
    ("redis://h/x", "database /x"),
    ("redis://h/-1", "database /-1"),
    ("redis://h/0/1", "database /0/1"),
    ("redis://h/1?db=2", "names two databases"),
    ("redis://h/0?db=x", "option db"),
    ("redis://h/0?db=-3", "option db"),
    ("unix:///run/r.sock?db=abc", "option db"),
    ("redis://h/0?socket_timeout=1", "unknown option 'socket_timeout'"),
    ("redis://h/0?bogus=1", "unknown option 'bogus'"),
    ("unix:///run/r.sock?bogus=1", "unknown option 'bogus'"),
    ("rediss://h/0?bogus=1", "unknown option 'bogus'"),
    ("redis://h/0?ssl_cert_reqs=none", "TLS options need rediss://"),
    ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
    ("redis://h/0?db", "option 'db' has no value"),
    ("redis://h/0?db=1&db=1", "given twice"),
    ("redis://h/0?prefix=", "option 'prefix' has no value"),
    ("redis://h/0?prefix=%7Bx%7D", "option prefix must be"),
    ("redis://h/0#frag", "fragment"),
    ("unix://host/run/r.sock", "not a host"),
    ("unix://", "needs a socket path"),
    ("memory://somewhere", "memory:// takes no"),
    ("memory://?prefix=x", "memory:// takes no"),
    ("http://h/0", "unsupported broker URL scheme 'http'"),
    ("redis://[::1/0", "does not parse"),
    ("redis://:one@h/0?password=two", "gives two passwords"),
    ("redis://h:63\t79/0", "control character"),
    ("redis://h/0?prefix=a\nb", "control character"),
    ("redis://:pass\x1bword@h/0", "control character"),
    ("redis+cluster://a:1,b:2/3", "only database 0"),
    ("redis+cluster://a:1?db=1", "only database 0"),
    ("redis+cluster://a:1,b:x", "host 'b:x'"),
    ("redis+cluster://a:1,,b:2", "host ''"),
    ("redis+cluster://a:1/0/1", "at most a database"),
    ("redis+cluster://a:1?ssl_cert_reqs=none", "TLS options need rediss://"),
    ("redis+cluster://a:1?sentinel_password=x", "sentinel options need redis+sentinel://"),
    ("redis+sentinel://s:26379", "name the master"),
    ("redis+sentinel://s:26379/m/x", "database /x"),
    ("redis+sentinel://s:26379/m/1/2", "/<master name>[/<db>]"),
    ("redis+sentinel://s:99999/m", "port '99999'"),
    ("rediss+sentinel://s:1/m?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
]


@pytest.mark.parametrize("url", [" redis://h/0", "redis://h/0 ", "\tmemory://", "memory://\n"])
def test_a_broker_url_with_surrounding_spaces_is_refused_by_settings_as_by_the_broker(
    url: str,
) -> None:
    # urlsplit strips them: Settings took the URL that App then refused
    with pytest.raises(ConfigurationError, match="surrounding spaces"):
        Settings(broker_url=url)


@pytest.mark.parametrize(("url", "part"), BAD_URLS)
def test_a_bad_broker_url_is_refused_when_settings_are_built(url: str, part: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(part)) as caught:
        Settings(broker_url=url)
    assert caught.value.setting == "broker_url"


@pytest.mark.parametrize(("url", "part"), BAD_URLS)
def test_a_bad_broker_url_is_refused_by_every_way_of_building_a_broker(
    url: str, part: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskit import App
    from taskit.broker import from_url

    with pytest.raises(ConfigurationError, match=re.escape(part)):
        from_url(url)
    with pytest.raises(ConfigurationError, match=re.escape(part)):
        App(url)
    monkeypatch.setenv("TASKIT_BROKER_URL", url)
    with pytest.raises(ConfigurationError, match=f"TASKIT_BROKER_URL: .*{re.escape(part)}"):
        App()


@pytest.mark.parametrize(
    ("url", "part"), [(u, p) for u, p in BAD_URLS if u.split(":")[0] in ("redis", "rediss", "unix")]
)
def test_a_bad_url_is_refused_by_the_redis_broker(url: str, part: str) -> None:
    from taskit.broker.redis import RedisBroker

    with pytest.raises(ConfigurationError, match=re.escape(part)):
        RedisBroker(url)


def test_a_bad_url_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(broker_url="redis://user:s3cret@h:99999/0")
    assert "s3cret" not in str(caught.value)
    assert "redis://user:***@h:99999/0" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("memory://", None),
        ("redis://", None),
        ("redis://localhost", None),
        ("redis://localhost:6379", None),
        ("redis://localhost:6379/", None),
        ("redis://user:p%40ss@localhost:6379/15?prefix=shop", "shop"),
        ("redis://localhost/0?db=0&password=x", None),
        ("rediss://h:6380/1?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem&prefix=a:b", "a:b"),
        ("unix:///run/redis.sock?db=2&prefix=p", "p"),
        ("unix://:pw@/run/redis.sock", None),
        ("redis://[::1]:6379/0", None),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3", None),
        ("redis+cluster://u:pw@n1:7000/0?prefix=shop", "shop"),
        ("rediss+cluster://n1:7000?ssl_cert_reqs=none&prefix=p", "p"),
        ("redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster", None),
        ("redis+sentinel://:pw@s1:26379/mymaster/2?sentinel_password=spw&prefix=q", "q"),
        ("rediss+sentinel://s1:26379/m?ssl_ca_certs=/ca.pem&sentinel_username=u", None),
    ],
)
def test_a_good_broker_url_is_accepted_and_its_prefix_read(url: str, prefix: str | None) -> None:
    from taskit._urls import parse_broker_url

    parsed = parse_broker_url(url)

    assert parsed.prefix == prefix
    assert "prefix=" not in parsed.url  # taskit's own option is not for the Redis client
    assert Settings(broker_url=url).broker_url == url


# -- brokers take the App's settings -----------------------------------------------------------
def _unique(stem: str) -> str:
    import uuid

    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_keys(redis_url: str) -> Iterator[list[str]]:
    """Prefixes a test used; their keys are deleted afterwards."""
    import redis

    used: list[str] = []
    yield used
    client = redis.Redis.from_url(redis_url)
    for prefix in used:
        doomed = list(client.scan_iter(match=f"{{{prefix}}}:*", count=500))
        if doomed:
            client.delete(*doomed)
    client.close()


async def _finished_ttl(app: Any) -> tuple[str, float]:
    """Run one job to completion on ``app``; (its broker's prefix, the done record's TTL in s)."""
    import redis.asyncio

    from taskit.broker.redis._testing import url_of

    @app.task(name=_unique("t"))
    async def work() -> int:
        return 1

    job = await work.enqueue()
    await app.worker(concurrency=1).run(burst=True)
    broker = app.broker
    client = redis.asyncio.Redis.from_url(url_of(broker))
    try:
        ttl = await client.pttl(broker.keys.done(job.id))
    finally:
        await client.aclose()
        await app.close()
    return broker.keys.prefix, ttl / 1000


@pytest.mark.redis
def test_a_broker_built_by_hand_honours_the_apps_result_ttl_and_prefix(
    redis_url: str, redis_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskit import App
    from taskit.broker.redis import RedisBroker

    prefix = _unique("byhand")
    redis_keys.append(prefix)
    monkeypatch.setenv("TASKIT_RESULT_TTL", "120")
    monkeypatch.setenv("TASKIT_REDIS_PREFIX", prefix)

    used, ttl = anyio.run(_finished_ttl, App(RedisBroker(redis_url)))  # the deployment doc's form

    assert used == prefix
    assert 100 < ttl <= 120


@pytest.mark.redis
def test_an_explicit_prefix_keeps_it_and_still_takes_the_result_ttl(
    redis_url: str, redis_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskit import App
    from taskit.broker.redis import RedisBroker

    prefix = _unique("shop")
    redis_keys += [prefix, "taskit-from-env"]
    monkeypatch.setenv("TASKIT_RESULT_TTL", "90")
    monkeypatch.setenv("TASKIT_REDIS_PREFIX", "taskit-from-env")

    used, ttl = anyio.run(_finished_ttl, App(RedisBroker(redis_url, prefix=prefix)))

    assert used == prefix
    assert 60 < ttl <= 90


@pytest.mark.redis
def test_the_prefix_comes_from_the_url_with_every_other_setting_honoured(
    redis_url: str, redis_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskit import App

    prefix = _unique("fromurl")
    redis_keys += [prefix, "taskit-from-env"]
    monkeypatch.setenv("TASKIT_BROKER_URL", f"{redis_url}?prefix={prefix}")
    monkeypatch.setenv("TASKIT_REDIS_PREFIX", "taskit-from-env")  # the URL is more specific
    monkeypatch.setenv("TASKIT_RESULT_TTL", "30")

    used, ttl = anyio.run(_finished_ttl, App())

    assert used == prefix
    assert 10 < ttl <= 30


def test_the_prefix_rule_explicit_then_url_then_settings_then_default() -> None:
    from taskit import App
    from taskit.broker.redis import RedisBroker

    url = "redis://127.0.0.1:6379/0"
    settings = Settings(redis_prefix="from-settings", result_ttl=5)
    cases = [
        (RedisBroker(url), "taskit"),  # no App: the defaults
        (App(RedisBroker(url), settings=settings).broker, "from-settings"),
        (App(RedisBroker(url + "?prefix=u"), settings=settings).broker, "u"),
        (App(RedisBroker(url, prefix="arg"), settings=settings).broker, "arg"),
        (App(url + "?prefix=u", settings=settings).broker, "u"),
        (App(url, settings=settings).broker, "from-settings"),
    ]
    for broker, prefix in cases:
        assert isinstance(broker, RedisBroker)
        assert broker.keys.prefix == prefix
    with pytest.raises(ConfigurationError, match="two key prefixes"):
        RedisBroker(url + "?prefix=u", prefix="arg")
    with pytest.raises(ConfigurationError, match="redis_prefix"):
        RedisBroker(url, prefix="{x}")
    with pytest.raises(ConfigurationError, match="result_ttl"):
        RedisBroker(url, result_ttl=math.inf)


@pytest.mark.anyio
@pytest.mark.parametrize("given", [None, 1000.0, math.inf])
async def test_a_memory_broker_built_by_hand_honours_the_apps_result_ttl(
    given: float | None,
) -> None:
    from taskit import App
    from taskit.broker import MemoryBroker
    from taskit.testing import FakeClock

    clock = FakeClock()
    app = App(MemoryBroker(clock=clock, result_ttl=given), settings=Settings(result_ttl=10))

    @app.task
    async def work() -> int:
        return 1

    job = await work.enqueue()
    await app.worker(concurrency=1).run(burst=True)
    clock.advance(11)

    found = await app.get_job(job.id)
    assert (found is None) == (given is None)  # the setting, unless given explicitly


def test_two_apps_with_different_settings_cannot_share_one_broker() -> None:
    from taskit import App
    from taskit.broker import MemoryBroker

    broker = MemoryBroker()
    App(broker, settings=Settings(result_ttl=10))
    App(broker, settings=Settings(result_ttl=10, concurrency=3))  # what it uses agrees: fine
    with pytest.raises(ConfigurationError, match=r"result_ttl=10 \(this App: 20\)"):
        App(broker, settings=Settings(result_ttl=20))
    shared = MemoryBroker(result_ttl=5)  # given explicitly: any App may share it
    App(shared, settings=Settings(result_ttl=10))
    App(shared, settings=Settings(result_ttl=20))


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


def test_a_redis_broker_shows_its_url_without_the_password() -> None:
    from taskit.broker.redis import RedisBroker
    from taskit.broker.redis._testing import url_of

    broker = RedisBroker("redis://jobs:s3cret@127.0.0.1:1/2?prefix=shop")
    assert broker.url == "redis://jobs:***@127.0.0.1:1/2"
    assert url_of(broker) == "redis://jobs:s3cret@127.0.0.1:1/2"  # what it connects to


def test_an_app_gives_its_redis_broker_the_broker_timeout() -> None:
    from taskit import App
    from taskit.broker.redis import RedisBroker

    app = App("redis://127.0.0.1:1/0", settings=Settings(broker_timeout=0.25))
    assert isinstance(app.broker, RedisBroker)
    assert app.broker.timeout == 0.25
    assert RedisBroker("redis://127.0.0.1:1/0").timeout == 5.0  # built by hand
    by_hand = App(RedisBroker("redis://127.0.0.1:1/0"), settings=Settings(broker_timeout=0.5))
    assert by_hand.broker.timeout == 0.5  # type: ignore[attr-defined]
    explicit = RedisBroker("redis://127.0.0.1:1/0", timeout=2.0)
    App(explicit, settings=Settings(broker_timeout=0.5))
    assert explicit.timeout == 2.0  # given explicitly: it wins


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_a_redis_broker_refuses_a_timeout_that_bounds_nothing(value: float) -> None:
    from taskit.broker.redis import RedisBroker

    with pytest.raises(ConfigurationError, match="timeout"):
        RedisBroker("redis://127.0.0.1:1/0", timeout=value)
