"""The user API of limits (``taskit.limiting``): ``App.limit`` declarations, ``Limit.by``, the
``limits`` option in every spelling, the limit keys a job gets at enqueue, and the definitions
from ``TASKIT_LIMITS_JSON``. Enforcement is the brokers' (``tests/test_limits_e2e.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from taskit import App, ConfigurationError, Job, JobHandler, JobResult, MemoryBroker, Settings
from taskit.limiting import Limit, LimitBook, LimitPlan, parse_limits_json
from taskit.limits import LimitSpec
from taskit.service import JobService

pytestmark = pytest.mark.anyio


def make_app(**settings: Any) -> App:
    return App(MemoryBroker(), settings=Settings(**settings))


# -- declaring -----------------------------------------------------------------------------------
def test_app_limit_declares_a_definition_once() -> None:
    app = make_app()
    exports = app.limit("exports", concurrency=2)
    assert exports == Limit("exports", LimitSpec(concurrency=2))
    assert app.limit("exports", concurrency=2) == exports  # the same values: the same limit
    with pytest.raises(ValueError, match=r"'exports' is declared twice with different values"):
        app.limit("exports", concurrency=3)
    token = app.limit("api-token", rate=100, per=60, burst=100)
    assert dict(app.limits) == {
        "exports": LimitSpec(concurrency=2),
        "api-token": LimitSpec(rate=100, per=60, burst=100),
    }
    assert token.spec is not None
    assert token.spec.bucket == 100


def test_a_limit_without_values_is_a_reference_declaring_nothing() -> None:
    app = make_app()
    elsewhere = app.limit("elsewhere")
    assert (elsewhere.spec, "elsewhere" in app.limits) == (None, False)
    app.limit("elsewhere", concurrency=1)  # a reference then a definition: no conflict
    assert app.limits["elsewhere"] == LimitSpec(concurrency=1)


@pytest.mark.parametrize(
    ("name", "values", "error"),
    [
        ("", {"concurrency": 1}, "limit name"),
        ("a:b", {"concurrency": 1}, "without ':'"),
        ("x", {"concurrency": -1}, "concurrency must be from 0"),
        ("x", {"rate": 0}, "rate must be from 1"),
        ("x", {"concurrency": 1, "burst": 5}, "burst needs a rate"),
        ("x", {"rate": 5, "per": 0}, "per must be finite seconds above 0"),
        ("x", {"concurrency": True}, "concurrency must be an int"),
    ],
)
def test_app_limit_refuses_bad_values_naming_them(name: str, values: Any, error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        make_app().limit(name, **values)


def test_by_takes_an_argument_name_or_a_function() -> None:
    exports = Limit("exports")
    assert exports.by("customer_id").key == "customer_id"
    with pytest.raises(ValueError, match="argument name"):
        exports.by("customer id")
    with pytest.raises(TypeError, match="by\\(\\) takes an argument name or a function"):
        exports.by(3)  # type: ignore[arg-type]


# -- the keys a job gets -----------------------------------------------------------------------
async def test_a_job_gets_its_concrete_limit_keys_at_enqueue() -> None:
    app = make_app()
    exports = app.limit("exports", concurrency=2)
    payment = app.limit("payment-api", concurrency=50)

    @app.task(limits=[exports.by("customer_id"), payment])
    def export(customer_id: str, fmt: str = "csv") -> None: ...

    assert (await export.enqueue("acme")).limits == ("payment-api", "exports:acme")
    assert (await export.enqueue(customer_id="zeta")).limits == ("payment-api", "exports:zeta")
    stored = await app.get_job((await export.enqueue("acme", "pdf")).id)
    assert stored is not None
    assert stored.limits == ("payment-api", "exports:acme")


async def test_a_key_function_gets_the_bound_arguments_defaults_included() -> None:
    app = make_app()
    token = app.limit("api-token", rate=10)
    seen: list[dict[str, Any]] = []

    def prefix(**arguments: Any) -> str:
        seen.append(arguments)
        return str(arguments["token"][:4])

    @app.task(limits=[token.by(prefix)])
    async def call(token: str, retries: int = 2, **extra: int) -> None: ...

    job = await call.enqueue("abcdef", more=1)
    assert job.limits == ("api-token:abcd",)
    assert seen == [{"token": "abcdef", "retries": 2, "more": 1}]


async def test_an_int_key_is_written_in_decimal_and_other_types_are_refused() -> None:
    app = make_app()
    per_user = app.limit("per-user", concurrency=1)

    @app.task(limits=[per_user.by("user_id")], validate=False)
    def work(user_id: Any) -> None: ...

    assert (await work.enqueue(42)).limits == ("per-user:42",)
    for bad in (1.5, None, True, b"x"):
        with pytest.raises(TypeError, match=r"key of limit 'per-user' \(argument 'user_id'\)"):
            await work.enqueue(bad)
    with pytest.raises(ValueError, match="may not hold NUL"):
        await work.enqueue("a\0b")
    with pytest.raises(ValueError, match="key too long"):
        await work.enqueue("k" * 2000)

    @app.task(limits=[per_user.by(lambda **_: 2.5)])  # type: ignore[arg-type,return-value]
    def floaty(user_id: str) -> None: ...

    with pytest.raises(TypeError, match="its key function"):
        await floaty.enqueue("u")
    assert (await app.stats()).get("default") is not None
    assert (await app.stats())["default"].queued == 1  # only the good job was stored


async def test_an_error_in_a_key_function_names_the_limit_and_stores_nothing() -> None:
    app = make_app()
    limit = app.limit("l", concurrency=1)

    @app.task(limits=[limit.by(lambda customer: customer["id"])])
    def work(customer: dict[str, str]) -> None: ...

    with pytest.raises(KeyError) as caught:
        await work.enqueue({})
    assert "computing the key of limit 'l'" in "".join(caught.value.__notes__)
    assert await app.stats() == {}


def test_a_key_argument_the_function_does_not_take_is_refused_when_decorating() -> None:
    app = make_app()
    exports = app.limit("exports", concurrency=2)
    with pytest.raises(ValueError, match="keyed by argument 'customer', which the function"):

        @app.task(limits=[exports.by("customer")])
        def export(customer_id: str) -> None: ...

    with pytest.raises(ValueError, match="'args'"):

        @app.task(limits=[exports.by("args")])
        def spread(*args: str) -> None: ...

    assert set(app.tasks) == set()


async def test_per_call_limits_replace_the_tasks_and_an_empty_list_drops_them() -> None:
    app = make_app()
    exports, slow = app.limit("exports", concurrency=2), app.limit("slow", concurrency=1)

    @app.task(limits=[exports.by("customer_id")])
    def export(customer_id: str) -> None: ...

    assert (await export.options(limits=[slow]).enqueue("a")).limits == ("slow",)
    assert (await export.options(limits=[]).enqueue("a")).limits == ()
    assert (await export.options(priority=3).enqueue("a")).limits == ("exports:a",)
    with pytest.raises(ValueError, match="which the function does not take"):
        export.options(limits=[slow.by("nope")])


async def test_a_handler_and_a_remote_task_take_the_key_from_the_keyword_payload() -> None:
    class Export(JobHandler):
        job_type = "export"

        async def handle(self, job: Job) -> JobResult:
            return JobResult(success=True)

    app = make_app()
    exports = app.limit("exports", concurrency=2)
    handler = app.register(Export(), limits=[exports.by("customer_id")])
    assert (await handler.enqueue(customer_id="acme")).limits == ("exports:acme",)
    with pytest.raises(TypeError, match="limit 'exports': key argument 'customer_id' is missing"):
        await handler.enqueue(other=1)
    job = await JobService(app).create_job("export", {"customer_id": "b"}, limits=[exports])
    assert job.limits == ("exports",)

    remote = app.remote("elsewhere.export", limits=[exports.by("customer_id")])
    assert (await remote.enqueue(customer_id="c")).limits == ("exports:c",)
    with pytest.raises(
        TypeError, match="limit 'exports' takes its key from arguments passed by keyword"
    ):
        await remote.enqueue("c")


async def test_a_task_without_limits_has_no_plan_and_its_jobs_none() -> None:
    app = make_app()

    @app.task
    def plain(a: int) -> None: ...

    assert plain._limits is None
    assert (await plain.enqueue(1)).limits == ()


# -- configuration --------------------------------------------------------------------------------
def test_limits_json_declares_limits_and_wins_over_the_code() -> None:
    text = '{"exports": {"concurrency": 5}, "api-token": {"rate": 100, "per": 60, "burst": 10}}'
    app = App(MemoryBroker(), settings=Settings.from_env({"TASKIT_LIMITS_JSON": text}))
    exports = app.limit("exports", concurrency=2)
    assert exports.spec == LimitSpec(concurrency=2)  # the code's value, as declared
    assert app.limits["exports"] == LimitSpec(concurrency=5)  # configuration wins
    assert (app.limits.origin("exports"), app.limits.origin("api-token")) == ("config", "config")
    assert app.limits["api-token"] == LimitSpec(rate=100, per=60.0, burst=10)
    app.limit("local", concurrency=1)
    assert app.limits.origin("local") == "code"
    assert list(app.limits) == ["exports", "local", "api-token"]
    assert len(app.limits) == 3


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[1]", "not an object of limit definitions"),
        ("{", "not an object of limit definitions"),
        ('{"x": {"concurency": 1}}', "concurency"),
        ('{"x": {}}', "limit 'x': a limit needs a concurrency, a rate, or both"),
        ('{"x": {"rate": -1}}', "limit 'x': limit rate must be from 1"),
        ('{"a:b": {"rate": 1}}', "without ':'"),
    ],
)
def test_limits_json_refuses_a_bad_entry_naming_the_variable(text: str, error: str) -> None:
    with pytest.raises(ConfigurationError, match="TASKIT_LIMITS_JSON") as caught:
        App(MemoryBroker(), settings=Settings.from_env({"TASKIT_LIMITS_JSON": text}))
    assert error in str(caught.value)
    assert parse_limits_json('{"x": {"concurrency": 0}}') == {"x": LimitSpec(concurrency=0)}
    with pytest.raises(ConfigurationError, match="limits_json must be JSON text"):
        Settings(limits_json={"x": 1})  # type: ignore[arg-type]


def test_a_limit_book_iterates_code_then_config_names_once() -> None:
    book = LimitBook({"b": LimitSpec(rate=1)})
    book.declare("a", LimitSpec(concurrency=1))
    book.declare("b", LimitSpec(concurrency=1))
    assert (list(book), len(book), book["b"]) == (["a", "b"], 2, LimitSpec(rate=1))
    assert book.origin("zzz") is None


def test_a_plan_of_global_limits_alone_binds_nothing() -> None:
    plan = LimitPlan("t", [Limit("a"), Limit("b")], None)
    assert plan.keys((1, 2), {"x": object()}) == ("a", "b")
