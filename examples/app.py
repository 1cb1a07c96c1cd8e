"""An App for `taskit worker`: its broker comes from TASKIT_BROKER_URL (memory:// by default).

taskit worker examples.app:app --concurrency 8
"""

from __future__ import annotations

import anyio

from taskit import App

app = App()


@app.task(name="examples.add")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="examples.sleep")
async def sleep(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


@app.task(name="examples.shout")
def shout(text: str) -> str:
    return text.upper()
