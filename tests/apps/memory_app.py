"""An App on the in-process memory:// broker, for the CLI tests that check the commands which
cannot work across processes there refuse (or, for ``taskit worker``, warn)."""

from __future__ import annotations

from taskit import App, Settings

app = App("memory://", settings=Settings())


@app.periodic(every=60, args=(1, 2))
@app.task(name="memory.add")
async def add(a: int, b: int) -> int:
    return a + b
