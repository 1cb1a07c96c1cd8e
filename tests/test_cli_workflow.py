"""``taskit workflow APP ID``: the nodes and the status as a table or JSON, ``--cancel``, and one
line with exit 1 for an unknown id; an in-process broker is refused as by every admin command."""

from __future__ import annotations

import json

import anyio
from click.testing import CliRunner, Result

from taskit import chain, group
from taskit.cli import main
from tests.apps import workflow_app

APP = "tests.apps.workflow_app:app"


def taskit(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_table_shows_each_node_what_it_waits_for_and_how_it_ended() -> None:
    add, boom = workflow_app.add, workflow_app.boom
    wf = chain(group(add.s(1, 2), boom.s(3)), add.s(4, 5)).enqueue_sync()
    anyio.run(lambda: workflow_app.app.worker().run(burst=True))
    nodes = wf.state_sync().nodes
    result = taskit("workflow", APP, wf.id)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"workflow {wf.id}: failed (3/3 ended)"
    assert lines[1].split() == ["NODE", "TASK", "QUEUE", "STATUS", "WAITS", "FOR", "ERROR"]
    assert lines[2].split() == ["#0", nodes[0].id, "wf.add", "default", "completed"]
    boom_row = ["#1", nodes[1].id, "wf.boom", "default", "dead_letter", "ValueError:", "boom", "3"]
    assert lines[3].split() == boom_row
    assert lines[4].split()[:6] == ["#2", nodes[2].id, "wf.add", "default", "failed", "#0,#1"]
    assert "DependencyFailed: waited for job" in lines[4]


def test_json_and_cancel() -> None:
    add = workflow_app.add
    wf = chain(add.s(1, 2), add.step(3)).enqueue_sync()
    data = json.loads(taskit("workflow", APP, wf.id, "--json").output)
    assert data["id"] == wf.id
    assert data["status"] == "running"
    assert [n["status"] for n in data["nodes"]] == ["pending", "deferred"]
    assert data["nodes"][1]["after"] == [data["nodes"][0]["id"]]
    result = taskit("workflow", APP, wf.id, "--cancel")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "cancelled or asked to stop 2 node(s)",
        f"workflow {wf.id}: cancelled (2/2 ended)",
    ]
    again = json.loads(taskit("workflow", APP, wf.id, "--cancel", "--json").output)
    assert again["cancelled"] == 0
    assert again["status"] == "cancelled"


def test_an_unknown_workflow_is_one_line_and_exit_1() -> None:
    result = taskit("workflow", APP, "no-such-workflow")
    assert result.exit_code == 1
    assert "no workflow 'no-such-workflow'" in result.output


def test_an_in_process_broker_is_refused() -> None:
    result = taskit("workflow", "tests.apps.memory_app:app", "any-id")
    assert result.exit_code == 2
    assert "in-process memory:// broker" in result.output
