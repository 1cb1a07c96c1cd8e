"""The admin commands against a real Redis, through click's runner: info, job, dlq list /
requeue / purge, enqueue, cancel, purge and check. Each test works under a key prefix of its own
(the App of ``tests/apps/ops_app.py`` gets a fresh broker) and deletes its keys afterwards."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec
import pytest
import redis
from click.testing import CliRunner, Result

from taskit.broker.redis import RedisBroker
from taskit.cli import main
from taskit.job import JobStatus
from taskit.registry import WorkerInfo
from tests.apps import ops_app

APP = "tests.apps.ops_app:app"
pytestmark = pytest.mark.redis


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    saved = ops_app.app.broker
    ops_app.app.broker = made = RedisBroker(redis_url, prefix=f"ops-{uuid.uuid4().hex[:10]}")
    try:
        yield made
    finally:
        ops_app.app.broker = saved
        client = redis.Redis.from_url(redis_url)
        doomed = list(client.scan_iter(match=made.keys.pattern(), count=500))
        if doomed:
            client.delete(*doomed)
        client.close()


def taskit(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def ok(*args: str, input: str | None = None) -> str:
    result = taskit(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def sync(fn, *args):  # type: ignore[no-untyped-def]
    """Run ``await fn(*args)`` on a fresh loop and close the broker's clients of that loop."""

    async def go():  # type: ignore[no-untyped-def]
        try:
            return await fn(*args)
        finally:
            await ops_app.app.broker.close()

    return anyio.run(go)


def beat(broker: RedisBroker, name: str) -> None:
    """Register a worker record, as a live worker's announcement would."""
    now = datetime.now(UTC)
    info = WorkerInfo(name=name, host="box", pid=42, queues=["default"], concurrency=4,
                      started_at=now, beat_at=now, running=1, jobs_done=9)  # fmt: skip
    sync(functools.partial(broker.announce, name, msgspec.json.encode(info), ttl=30.0))


def run_worker() -> None:
    sync(functools.partial(ops_app.app.worker().run, burst=True))


def test_enqueue_then_job_shows_it(broker: RedisBroker) -> None:
    job_id = ok("enqueue", APP, "ops.add", "--args", "[2, 3]").strip()
    data = json.loads(ok("job", APP, job_id, "--json"))
    assert (data["task"], data["status"], data["args"]) == ("ops.add", "pending", [2, 3])
    assert data["created_by"] == "taskit enqueue"
    run_worker()
    text = ok("job", APP, job_id)
    assert "status:       completed" in text
    assert "result:" in text
    assert '"value": 5' in text


def test_job_shows_the_error_its_type_and_traceback(broker: RedisBroker) -> None:
    job_id = ok("enqueue", APP, "ops.boom").strip()
    run_worker()
    text = ok("job", APP, job_id)
    assert "error_type:   RuntimeError" in text
    assert "error:        boom" in text
    trace = text[text.index("traceback:\n") :]
    assert '    raise RuntimeError("boom")' in trace  # indented under its heading
    assert "  RuntimeError: boom" in trace
    data = json.loads(ok("job", APP, job_id, "--json"))
    assert data["traceback"].endswith("RuntimeError: boom\n")


def test_enqueue_with_kwargs_delay_and_queue(broker: RedisBroker) -> None:
    out = ok("enqueue", APP, "ops.add", "--kwargs", '{"a": 1, "b": 2}', "--delay", "60",
             "-q", "side", "--json")  # fmt: skip
    data = json.loads(out)
    assert (data["queue"], data["status"], data["kwargs"]) == (
        "side",
        "scheduled",
        {"a": 1, "b": 2},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ops.nope"], "unknown task 'ops.nope' (registered: ops.add, ops.boom, "),
        (["ops.add", "--args", "[1]"], "arguments do not fit task 'ops.add': "),
        (["ops.add", "--args", '["x", 2]'], "argument 'a' must be int, got str 'x'"),
        (["ops.add", "--kwargs", '{"a": 1, "b": 2, "c": 3}'], "unexpected keyword argument 'c'"),
        (["ops.add", "--args", "[1, 2"], "not JSON"),
        (["ops.add", "--args", '{"a": 1}'], "must be a JSON list"),
        (["ops.add", "--args", "[1, 2]", "--delay", "-1"], "-1.0 is not in the range 0<=x<="),
        (["ops.add", "--args", "[1, 2]", "--delay", "nan"], "'nan' is not a finite number"),
        (["ops.add", "--args", "[1, 2]", "--delay", "inf"], "inf is not in the range 0<=x<="),
        (["ops.add", "--args", "[1, 2]", "--delay", "1e300"], "1e+300 is not in the range"),
        (["ops.add", "--args", "[1, 2]", "--delay", "soon"], "'soon' is not a number of seconds"),
    ],
)
def test_enqueue_checks_arguments_like_code_does(
    broker: RedisBroker, args: list[str], message: str
) -> None:
    result = taskit("enqueue", APP, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert sync(ops_app.app.stats) == {}  # nothing was enqueued


def test_job_that_does_not_exist(broker: RedisBroker) -> None:
    result = taskit("job", APP, "nope")
    assert result.exit_code == 1
    assert "no job 'nope'" in result.output


def test_info_lists_queues_and_live_workers(broker: RedisBroker) -> None:
    ok("enqueue", APP, "ops.add", "--args", "[1, 1]")
    ok("enqueue", APP, "ops.add", "--args", "[1, 1]", "--delay", "30", "-q", "later")
    beat(broker, "w-7")
    text = ok("info", APP)
    lines = text.splitlines()
    assert lines[0].split() == ["QUEUE", "QUEUED", "SCHEDULED", "RUNNING", "COMPLETED", "FAILED",
                                "DEAD"]  # fmt: skip
    assert lines[1].split() == ["default", "1", "0", "0", "0", "0", "0"]
    assert lines[2].split() == ["later", "0", "1", "0", "0", "0", "0"]
    worker_line = next(line for line in lines if line.startswith("w-7"))
    assert worker_line.split()[:7] == ["w-7", "box", "42", "default", "4", "1", "9"]
    data = json.loads(ok("info", APP, "--json"))
    assert data["queues"]["later"]["scheduled"] == 1
    assert [w["name"] for w in data["workers"]] == ["w-7"]


def test_info_without_workers_says_so(broker: RedisBroker) -> None:
    assert "(no live worker)" in ok("info", APP)


def test_dead_letters_list_requeue_and_purge(broker: RedisBroker) -> None:
    first = ok("enqueue", APP, "ops.boom").strip()
    second = ok("enqueue", APP, "ops.boom").strip()
    run_worker()
    listed = ok("dlq", "list", APP)
    assert first in listed
    assert "boom" in listed
    data = json.loads(ok("dlq", "list", APP, "--queue", "default", "--json"))
    assert sorted(d["id"] for d in data) == sorted([first, second])
    assert data[0]["error"] == "boom"
    assert ok("dlq", "requeue", APP, first).strip() == "requeued 1 job"
    job = sync(ops_app.app.get_job, first)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    result = taskit("dlq", "requeue", APP, first, "unknown-id")
    assert result.exit_code == 1
    assert "requeued 0 jobs" in result.output
    assert taskit("dlq", "requeue", APP).exit_code == 2  # neither IDs nor --all
    run_worker()
    assert ok("dlq", "requeue", APP, "--all").strip() == "requeued 2 jobs"
    run_worker()
    aborted = taskit("dlq", "purge", APP, input="n\n")
    assert aborted.exit_code == 1
    assert "Aborted" in aborted.output
    assert len(json.loads(ok("dlq", "list", APP, "--json"))) == 2
    assert ok("dlq", "purge", APP, input="y\n").strip().endswith("deleted 2 dead letters")
    assert json.loads(ok("dlq", "list", APP, "--json")) == []
    assert ok("dlq", "purge", APP, "--yes").strip() == "deleted 0 dead letters"


def test_cancel_and_purge(broker: RedisBroker) -> None:
    job_id = ok("enqueue", APP, "ops.add", "--args", "[1, 2]").strip()
    assert ok("cancel", APP, job_id).strip() == f"cancelled {job_id}"
    again = taskit("cancel", APP, job_id)
    assert again.exit_code == 1
    assert "finished or unknown" in again.output
    for _ in range(3):
        ok("enqueue", APP, "ops.add", "--args", "[1, 2]")
    assert taskit("purge", APP, "default", input="n\n").exit_code == 1
    assert sync(ops_app.app.stats)["default"].queued == 3
    assert ok("purge", APP, "default", input="y\n").strip().endswith("deleted 3 waiting jobs")
    assert ok("purge", APP, "default", "--yes").strip() == "deleted 0 waiting jobs"


def test_check_needs_a_live_worker(broker: RedisBroker) -> None:
    none = taskit("check", APP)
    assert none.exit_code == 1
    assert "unhealthy: 0 live worker(s), need 1" in none.output
    assert ok("check", APP, "--min-workers", "0").startswith("ok: broker reachable")
    beat(broker, "w")
    assert "1 live worker(s)" in ok("check", APP)


def test_check_and_read_commands_when_the_broker_is_unreachable() -> None:
    saved = ops_app.app.broker
    ops_app.app.broker = RedisBroker("redis://user:s3cret@127.0.0.1:1/0")
    try:
        result = taskit("check", APP)
        assert result.exit_code == 2
        assert "unhealthy: broker unreachable" in result.output
        info = taskit("info", APP)
        assert info.exit_code == 1
        assert "cannot be reached" in info.output
        assert "s3cret" not in result.output + info.output
    finally:
        ops_app.app.broker = saved


def test_enqueue_refuses_in_the_words_of_code(broker: RedisBroker) -> None:
    """The CLI's check is enqueue's check: the same refusal, word for word."""
    with pytest.raises(TypeError) as caught:
        ops_app.add.prepare("x", 2)  # type: ignore[arg-type]
    result = taskit("enqueue", APP, "ops.add", "--args", '["x", 2]')
    assert result.exit_code == 1
    assert str(caught.value).removeprefix("task 'ops.add': ") in result.output
    assert sync(ops_app.app.stats) == {}


def test_enqueue_converts_json_to_the_parameter_types(broker: RedisBroker) -> None:
    job_id = ok("enqueue", APP, "ops.span", "--args", '[[1, 2], "2026-01-01T00:00:00"]').strip()
    run_worker()
    data = json.loads(ok("job", APP, job_id, "--json"))
    assert (data["status"], data["result"]["value"]) == ("completed", "tuple datetime")


def test_enqueue_takes_base64_for_bytes(broker: RedisBroker) -> None:
    """JSON has no bytes: a base64 string converts, as msgspec converts builtins."""
    job_id = ok("enqueue", APP, "ops.size", "--args", '["AAEC"]').strip()
    run_worker()
    data = json.loads(ok("job", APP, job_id, "--json"))
    assert (data["status"], data["result"]["value"]) == ("completed", 3)


# -- the in-process memory:// broker -------------------------------------------------------------
MEMORY_APP = "tests.apps.memory_app:app"


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["job", "some-id"],
        ["dlq", "list"],
        ["dlq", "requeue", "--all"],
        ["dlq", "purge", "--yes"],
        ["enqueue", "memory.add", "--args", "[1, 2]"],
        ["cancel", "some-id"],
        ["purge", "default", "--yes"],
        ["check"],
        ["scheduler"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_commands_that_cannot_work_across_processes_refuse_the_memory_broker(
    command: list[str],
) -> None:
    """On memory:// each process has its own empty broker: ``enqueue`` printed an id for a job
    that died with it, ``info`` always showed nothing. Each says so instead, and how to fix it."""
    at = 2 if command[0] == "dlq" else 1  # dlq's subcommand comes before the App
    args = [*command[:at], MEMORY_APP, *command[at:]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "in-process memory:// broker" in result.output
    # the App's code chose memory://: the fix is in the code, not the variable
    assert "build it as App()" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["enqueue", "hard.add", "--args", "[1, 2]"], ["worker"]])
def test_a_memory_broker_given_in_code_is_named_as_what_overrides_the_variable(
    command: list[str], tmp_path: Path
) -> None:
    """The quick start's ``App("memory://")`` with ``TASKIT_BROKER_URL=redis://...`` exported
    (what the README's Redis section says to do): the refusal told the user to export the
    variable they had exported; it must say that the code's URL wins over it."""
    (tmp_path / "hardcoded.py").write_text(
        "from taskit import App\n"
        "app = App('memory://')\n"
        "@app.task(name='hard.add')\n"
        "async def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env["TASKIT_BROKER_URL"] = "redis://:s3cret@127.0.0.1:6379/0"
    args = [command[0], "hardcoded:app", *command[1:]]
    if command[0] == "worker":
        args.append("--burst")
    done = subprocess.run(
        [sys.executable, "-m", "taskit", *args],
        capture_output=True, text=True, timeout=30, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert "overrides TASKIT_BROKER_URL=redis://:***@127.0.0.1:6379/0" in done.stderr
    assert "build it as App()" in done.stderr
    assert "export TASKIT_BROKER_URL" not in done.stderr
    assert "s3cret" not in done.stderr
