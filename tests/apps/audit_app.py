"""An App that publishes its job events (``taskit.audit``), for the cross-process audit tests:
a `taskit worker` of it runs jobs, the test process subscribes. Broker and prefix come from
``TASKIT_BROKER_URL`` and ``TASKIT_REDIS_PREFIX``."""

from __future__ import annotations

import taskit.audit
from taskit import App, Fail

app = App()
taskit.audit.publish(app, maxlen=1000)


@app.task(name="audit.double")
async def double(x: int) -> int:
    return 2 * x


@app.task(name="audit.refuse")
async def refuse() -> None:
    raise Fail("refused")
