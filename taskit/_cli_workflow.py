"""``taskit workflow APP ID``: a workflow's nodes (id, task, queue, status, what each waits for,
how it ended) and its status; ``--json`` for the record as JSON, ``--cancel`` to cancel what has
not ended first. Like the admin commands, it takes the App as ``MODULE:ATTR`` first and refuses
an in-process broker; an unknown id exits 1 with one line, as ``taskit job`` does."""

from __future__ import annotations

import click
import msgspec

from taskit._cli_admin import echo_json, echo_table, run
from taskit._cli_load import load_app
from taskit._cli_options import refuse_in_process
from taskit.workflow import WorkflowNode, WorkflowState

__all__ = ["workflow"]

#: The longest error text shown in the table (``--json`` has all of it).
_ERROR_WIDTH = 60


@click.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--cancel", is_flag=True, help="Cancel every node that has not ended, then show it.")
def workflow(app_path: str, workflow_id: str, as_json: bool, cancel: bool) -> None:
    """One workflow: each node (its task, queue, status, the nodes it waits for, its error once
    it failed) and the workflow's status. Exit 1 if there is none."""
    app = load_app(app_path)
    refuse_in_process(app, click.get_current_context().command_path)

    async def read() -> tuple[int | None, WorkflowState | None]:
        cancelled = await app.broker.cancel_workflow(workflow_id) if cancel else None
        return cancelled, await app.broker.workflow(workflow_id)

    cancelled, state = run(app, read)
    if state is None:
        raise click.ClickException(
            f"no workflow {workflow_id!r} (never existed, or its record expired)"
        )
    if as_json:
        data = msgspec.to_builtins(state)
        data["status"] = state.status.value
        if cancelled is not None:
            data["cancelled"] = cancelled
        echo_json(data)
        return
    if cancelled is not None:
        click.echo(f"cancelled or asked to stop {cancelled} node(s)")
    ended = sum(node.ended for node in state.nodes)
    click.echo(f"workflow {state.id}: {state.status.value} ({ended}/{len(state.nodes)} ended)")
    rows = [_row(node, state) for node in state.nodes]
    echo_table(["NODE", "TASK", "QUEUE", "STATUS", "WAITS FOR", "ERROR"], rows)


def _row(node: WorkflowNode, state: WorkflowState) -> list[str]:
    order = {n.id: i for i, n in enumerate(state.nodes)}
    waits = ",".join(f"#{order[p]}" if p in order else p for p in node.after)
    error = ""
    if node.result is not None and not node.result.success:
        error = ": ".join(p for p in (node.result.error_type, node.result.error) if p)
        if len(error) > _ERROR_WIDTH:
            error = error[: _ERROR_WIDTH - 3] + "..."
    return [f"#{order[node.id]} {node.id}", node.task, node.queue, node.status.value, waits, error]
