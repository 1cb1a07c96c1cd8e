"""How limit definitions reach the broker and how operators see and change them: a worker writes
its App's declared limits before its first reserve; ``taskit limits``, ``taskit limit
set/reset/delete`` and ``taskit info``; the limit gauges. Against ``LimitsDouble`` below: a
memory broker whose flow-control methods keep definitions in a dict and record every call (the
enforcement is the brokers', tested in their conformance suite); the same commands against real
Redis are in ``tests/test_limits_e2e.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from taskit import App, ConfigurationError, LimitSpec, LimitUsage, MemoryBroker, Settings
from taskit.cli import main
from taskit.job import Lease
from taskit.metrics import LIMIT_TOP_KEYS, Metrics
from tests.apps.limits_app import app

pytestmark = pytest.mark.anyio


class LimitsDouble(MemoryBroker):
    """Definitions in a dict (``only_new`` honoured), usage as the test sets it, every call
    recorded in order with the reserves; not in-process, so the admin commands accept it."""

    in_process = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.specs: dict[str, LimitSpec] = {}
        self.usage: dict[str, tuple[dict[str, int], dict[str, int]]] = {}

    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        self.calls.append(("set_limits", dict(specs), only_new))
        for name, spec in specs.items():
            if spec is None:
                self.specs.pop(name, None)
            elif not (only_new and name in self.specs):
                self.specs[name] = spec

    async def limit_specs(self) -> dict[str, LimitSpec]:
        return dict(self.specs)

    async def limit_usage(self, name: str, *, top: int = 10) -> LimitUsage:
        running, waiting = self.usage.get(name, ({}, {}))
        return LimitUsage(
            name=name, spec=self.specs.get(name), running=dict(list(running.items())[:top]),
            waiting=dict(list(waiting.items())[:top]),
        )  # fmt: skip

    async def reserve(self, queues: Sequence[str], **options: Any) -> list[Lease]:
        self.calls.append(("reserve",))
        return await super().reserve(queues, **options)


APP = "tests.apps.limits_app:app"


@pytest.fixture
def double() -> Iterator[LimitsDouble]:
    saved = app.broker
    app.broker = made = LimitsDouble()
    try:
        yield made
    finally:
        app.broker = saved


def taskit(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def ok(*args: str, input: str | None = None) -> str:
    result = taskit(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.output


# -- the worker writes declared limits first ---------------------------------------------------
async def test_a_worker_writes_its_declared_limits_before_its_first_reserve(
    double: LimitsDouble,
) -> None:
    double.specs["exports"] = LimitSpec(concurrency=7)  # set live by an operator: kept
    await app.worker().run(burst=True)
    assert double.calls[0] == ("set_limits", dict(app.limits), True)
    assert double.calls[1] == ("reserve",)
    assert [c[0] for c in double.calls].count("set_limits") == 1
    assert double.specs == {
        "exports": LimitSpec(concurrency=7),
        "payment-api": LimitSpec(concurrency=50),
        "api-token": LimitSpec(rate=100, per=60, burst=10),
    }


async def test_a_worker_of_an_app_without_limits_writes_none() -> None:
    broker = LimitsDouble()
    plain = App(broker, settings=Settings())
    await plain.worker().run(burst=True)
    assert broker.calls
    assert all(call == ("reserve",) for call in broker.calls)


async def test_a_worker_with_limits_refuses_a_broker_that_cannot_store_them() -> None:
    limited = App(NoLimits(), settings=Settings())
    limited.limit("x", concurrency=1)
    with pytest.raises(BaseExceptionGroup) as caught:  # as a bad password stops it (cli unwraps)
        with anyio.fail_after(5):
            await limited.worker().run(burst=True)
    assert caught.group_contains(ConfigurationError, match=r"declares limits \(x\) but its broker")


# -- the commands ------------------------------------------------------------------------------
def test_limits_shows_live_declared_and_busiest_keys(double: LimitsDouble) -> None:
    double.specs = {"exports": LimitSpec(concurrency=5), "orphan": LimitSpec(rate=3, per=2)}
    double.usage["exports"] = ({"exports:acme": 2, "exports:zeta": 1}, {"exports:acme": 9})
    out = ok("limits", APP)
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"api-token", "exports", "orphan", "payment-api"}
    assert "concurrency 5" in lines["exports"]
    assert "concurrency 2" in lines["exports"]
    assert "exports:acme=2 exports:zeta=1" in lines["exports"]
    assert lines["exports"].rstrip().endswith("exports:acme=9")
    assert lines["orphan"].split()[1:] == ["rate", "3/2s"]  # live only: not declared
    assert lines["payment-api"].split()[1] == "-"  # declared, not yet written by a worker

    data = json.loads(ok("limits", APP, "--json", "--top", "1"))["limits"]
    by_name = {entry["name"]: entry for entry in data}
    assert by_name["exports"] == {
        "name": "exports", "live": {"concurrency": 5}, "declared": {"concurrency": 2},
        "declared_from": "code", "running": {"exports:acme": 2},
        "waiting": {"exports:acme": 9}, "differs": True,
    }  # fmt: skip
    assert by_name["api-token"]["live"] is None


def test_limit_set_changes_the_given_parts_of_the_live_definition(double: LimitsDouble) -> None:
    assert ok("limit", "set", APP, "exports", "--concurrency", "0") == (
        "limit exports: concurrency 0 (paused)\n"  # from the declared one: the broker had none
    )
    assert double.specs["exports"] == LimitSpec(concurrency=0)
    out = ok("limit", "set", APP, "exports", "--rate", "10", "--per", "60")
    assert out == "limit exports: concurrency 0 (paused), rate 10/60s\n"
    ok("limit", "set", APP, "exports", "--unlimited", "concurrency", "--burst", "3")
    assert double.specs["exports"] == LimitSpec(rate=10, per=60, burst=3)
    ok("limit", "set", APP, "new-one", "--concurrency", "4")
    assert double.specs["new-one"] == LimitSpec(concurrency=4)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["new-one"], "a limit needs a concurrency, a rate, or both"),
        (["new-one", "--burst", "3", "--concurrency", "1"], "burst needs a rate"),
        (["exports", "--concurrency", "-1"], "-1 is not in the range"),
        (["exports", "--per", "0", "--rate", "1"], "0 is not in the range"),
        (["bad:name", "--concurrency", "1"], "without ':'"),
    ],
)
def test_limit_set_refuses_what_is_not_a_definition(
    double: LimitsDouble, args: list[str], error: str
) -> None:
    result = taskit("limit", "set", APP, *args)
    assert result.exit_code == 2, result.output
    assert error in result.output
    assert not [c for c in double.calls if c[0] == "set_limits"]


def test_limit_reset_writes_the_declared_definition_and_delete_removes_it(
    double: LimitsDouble,
) -> None:
    double.specs["exports"] = LimitSpec(concurrency=9)
    assert ok("limit", "reset", APP, "exports") == "limit exports: concurrency 2 (from code)\n"
    assert double.specs["exports"] == LimitSpec(concurrency=2)
    result = taskit("limit", "reset", APP, "orphan")
    assert result.exit_code == 1
    assert "declared neither by the App's code" in result.output

    assert taskit("limit", "delete", APP, "exports", input="n\n").exit_code == 1  # aborted
    assert "exports" in double.specs
    out = ok("limit", "delete", APP, "exports", "--yes")
    assert (
        out
        == "limit exports: deleted (declared by the App: a worker that starts writes it again)\n"
    )
    assert "exports" not in double.specs
    assert double.calls[-1] == ("set_limits", {"exports": None}, False)


def test_info_shows_a_limits_section(double: LimitsDouble) -> None:
    double.specs["exports"] = LimitSpec(concurrency=2)
    double.usage["exports"] = ({f"exports:c{i}": 1 for i in range(5)}, {})
    out = ok("info", APP)
    header = next(line for line in out.splitlines() if line.startswith("LIMIT "))
    assert "RUNNING" in header
    row = next(line for line in out.splitlines() if line.startswith("exports "))
    assert "exports:c0=1 exports:c1=1 exports:c2=1" in row
    assert "c3" not in row
    data = json.loads(ok("info", APP, "--json"))
    assert [entry["name"] for entry in data["limits"]] == [
        "api-token", "exports", "payment-api",
    ]  # fmt: skip


def test_the_commands_say_when_a_broker_stores_no_limits() -> None:
    saved = app.broker
    app.broker = NoLimits()
    try:
        result = taskit("limits", APP)
        assert result.exit_code == 1
        assert "does not store limits" in result.output
        out = ok("info", APP, "--json")
        assert json.loads(out)["limits"] is None
    finally:
        app.broker = saved


class NoLimits(MemoryBroker):
    """A shared broker without flow control (the contract's defaults raise)."""

    in_process = False

    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        raise NotImplementedError("set_limits")

    async def limit_specs(self) -> dict[str, LimitSpec]:
        raise NotImplementedError("limit_specs")


# -- metrics -----------------------------------------------------------------------------------
async def test_limit_gauges_show_the_busiest_keys_and_forget_the_others(
    double: LimitsDouble,
) -> None:
    metrics = Metrics(app)
    double.specs = {"exports": LimitSpec(concurrency=2), "payment-api": LimitSpec(concurrency=5)}
    many = {f"exports:c{i:02}": 1 for i in range(LIMIT_TOP_KEYS + 5)}
    double.usage["exports"] = (many, {"exports:c00": 4})
    double.usage["payment-api"] = ({"payment-api": 5}, {"payment-api": 12})
    await metrics.refresh()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(f"taskit_{name}", labels)  # type: ignore[no-any-return]

    assert value("limit_running", limit="payment-api", key="payment-api") == 5
    assert value("limit_waiting", limit="payment-api", key="payment-api") == 12
    assert value("limit_waiting", limit="exports", key="exports:c00") == 4
    running = [m for m in metrics.text().splitlines() if m.startswith("taskit_limit_running{")]
    assert len(running) == LIMIT_TOP_KEYS + 1  # bounded: the top keys of each limit

    double.usage["exports"] = ({"exports:c99": 2}, {})
    await metrics.refresh()
    assert value("limit_running", limit="exports", key="exports:c00") is None
    assert value("limit_running", limit="exports", key="exports:c99") == 2


async def test_metrics_on_a_broker_without_limits_have_no_limit_gauges() -> None:
    metrics = Metrics(App(NoLimits(), settings=Settings()), prefix="jobs")
    await metrics.refresh()
    await metrics.refresh()
    assert "jobs_limit_running{" not in metrics.text()
    assert "jobs_queue_depth" in metrics.text()
