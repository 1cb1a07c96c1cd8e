"""An App for ``taskit workflow``'s tests: a memory broker that says it is shared, so the
command (run in the test's process by click's runner) reads the jobs the test enqueued."""

from __future__ import annotations

from typing import ClassVar

from taskit import App, MemoryBroker, Settings


class SharedMemoryBroker(MemoryBroker):
    """A memory broker the CLI does not refuse: the runner and the test share one process."""

    in_process: ClassVar[bool] = False


app = App(SharedMemoryBroker(), settings=Settings())


@app.task(name="wf.add")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="wf.boom", max_retries=0)
async def boom(a: int) -> int:
    raise ValueError(f"boom {a}")
