"""``fair_by``: how a task gives each job its group at enqueue (``taskit.fairness``), from every
spelling, and the clear errors for what cannot be a group."""

from __future__ import annotations

from typing import Any

import pytest

from taskit import App, Job, JobResult, MemoryBroker
from taskit.fairness import MAX_GROUP, check_group, group_of
from taskit.handlers import JobHandler

pytestmark = pytest.mark.anyio


def new_app() -> App:
    return App(broker=MemoryBroker())


def test_an_argument_name_gives_the_group_bound_by_position_keyword_or_default() -> None:
    app = new_app()

    @app.task(fair_by="tenant")
    def export(kind: str, tenant: str = "default") -> None: ...

    assert export.prepare("csv", "acme").group == "acme"
    assert export.prepare("csv", tenant="bakery").group == "bakery"
    assert export.prepare("csv").group == "default"


def test_a_function_gets_the_bound_arguments_as_keywords_and_an_int_becomes_text() -> None:
    app = new_app()

    @app.task(fair_by=lambda user, **_: user["org"])
    def notify(user: dict[str, Any], text: str) -> None: ...

    assert notify.prepare({"org": 42}, "hi").group == "42"


def test_a_task_without_fair_by_makes_ungrouped_jobs() -> None:
    app = new_app()

    @app.task
    def plain(x: int) -> None: ...

    assert plain.prepare(1).group is None


@pytest.mark.parametrize(
    ("fair_by", "error", "match"),
    [
        ("nope", TypeError, "fair_by names argument 'nope', which the call does not have"),
        (lambda tenant: 1.5, TypeError, "fair_by must give a str or an int, got float"),
        (lambda tenant: True, TypeError, "got bool"),
        (lambda tenant: "a\0b", ValueError, "without NUL"),
        (lambda tenant: "x" * (MAX_GROUP + 1), ValueError, "201 characters"),
    ],
)
def test_what_cannot_be_a_group_is_refused_at_enqueue(
    fair_by: Any, error: type[Exception], match: str
) -> None:
    app = new_app()

    @app.task(fair_by=fair_by)
    def job(tenant: str) -> None: ...

    with pytest.raises(error, match=match):
        job.prepare("acme")


@pytest.mark.parametrize(
    ("fair_by", "error", "match"),
    [
        ("not a name", ValueError, "fair_by must name an argument"),
        (3, TypeError, "fair_by must be an argument name or a function"),
    ],
)
def test_a_bad_fair_by_is_refused_when_the_task_is_made(
    fair_by: Any, error: type[Exception], match: str
) -> None:
    app = new_app()
    with pytest.raises(error, match=match):
        app.task(fair_by=fair_by)(lambda tenant: None)
    with pytest.raises(error, match=match):
        app.remote("elsewhere", fair_by=fair_by)


def test_a_remote_task_takes_its_group_from_keywords_only() -> None:
    app = new_app()
    remote = app.remote("reports.build", fair_by="tenant")

    assert remote.prepare(tenant="acme", kind="csv").group == "acme"
    with pytest.raises(TypeError, match="pass them as keywords"):
        remote.prepare("acme")


async def test_a_class_handler_takes_its_group_from_its_keyword_payload() -> None:
    class Build(JobHandler):
        job_type = "reports.build"

        async def handle(self, job: Job) -> JobResult:
            return JobResult(success=True)

    app = new_app()
    task = app.register(Build(), fair_by="tenant")

    stored = await task.enqueue(tenant="acme")
    assert stored.group == "acme"
    got = await app.get_job(stored.id)
    assert got is not None
    assert got.group == "acme"


def test_check_group_and_group_of_say_what_is_wrong() -> None:
    assert check_group("tenant 7|x:y") == "tenant 7|x:y"
    with pytest.raises(TypeError, match="must be a string, got int"):
        check_group(7)
    with pytest.raises(ValueError, match="1 to 200 characters"):
        check_group("")
    assert group_of("t", None, (), {"t": "x"}) == "x"
