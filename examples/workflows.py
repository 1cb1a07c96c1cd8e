"""Workflows: a chain, a chord, a bounded map, a failure and `depends_on`, typed end to end.

    python examples/workflows.py                                   # in memory
    TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 python examples/workflows.py

* `fetch | parse | store` is a chain: each step gets the result of the one before.
* `chord(fetch.map(...), summarize.step())` fetches pages (at most two at once) and feeds the
  list of their sizes to one callback.
* A chain whose first node fails: the step after it fails without running, and the workflow's
  result names the node that failed and its error.
* A chord with `if_failed="continue"`: its callback runs anyway, fed every `JobResult`.
* `report` waits, with `depends_on`, for a job enqueued earlier.
"""

from __future__ import annotations

import anyio

from taskit import App, JobResult, WorkflowFailed, chain, chord

app = App()  # TASKIT_BROKER_URL, else memory://

PAGES = {"/": "<h1>home</h1>", "/about": "<p>about us</p>", "/jobs": "<ul></ul>"}


@app.task(retry_on=(ConnectionError,))  # a missing page fails at once: no retry helps
async def fetch(path: str) -> str:
    if path not in PAGES:
        raise LookupError(f"no page {path}")
    return PAGES[path]


@app.task
def parse(html: str) -> int:
    return len(html)


@app.task
async def store(size: int, *, table: str) -> str:
    return f"{table}: {size} bytes"


@app.task
async def summarize(sizes: list[int]) -> str:
    return f"{len(sizes)} pages, {sum(sizes)} bytes"


@app.task
async def tally(results: list[JobResult]) -> str:
    return (
        f"{sum(r.success for r in results)} fetched, {sum(not r.success for r in results)} failed"
    )


@app.task
async def report(note: str) -> str:
    return f"report after {note}"


async def main() -> None:
    pipeline = await (fetch.s("/") | parse.step() | store.step(table="sizes")).enqueue()
    sizes = parse.map([(html,) for html in PAGES.values()], concurrency=2)
    summary = await chord(sizes, summarize.step()).enqueue()
    broken = await chain(fetch.s("/gone"), parse.step()).enqueue()
    paths = ["/", "/gone", "/jobs"]
    tallied = await chord(
        fetch.map([(p,) for p in paths]), tally.step(), if_failed="continue"
    ).enqueue()
    first = await fetch.enqueue("/about")
    waiting = await report.options(depends_on=[first]).enqueue("the fetch")
    stats = await app.worker(concurrency=4).run(burst=True)

    print(f"pipeline: {await pipeline.result(timeout=10)}")
    print(f"summary:  {await summary.result(timeout=10)}")
    try:
        await broken.result(timeout=10)
    except WorkflowFailed as exc:
        name = exc.task.rpartition(".")[2]
        print(f"broken:   {name} {exc.status}: {exc.error_type}: {exc.error}")
    state = await broken.state()
    steps = [f"{node.task.rpartition('.')[2]} {node.status.value}" for node in state.nodes]
    print(f"          {' -> '.join(steps)}")
    print(f"tallied:  {await tallied.result(timeout=10)}")
    assert waiting.workflow is not None
    print(f"waiting:  {await app.workflow(waiting.workflow).result(timeout=10)}")
    print(f"worker:   {stats}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
