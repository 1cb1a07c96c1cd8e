"""Job events seen from any process: `taskit.audit.publish` and `taskit.audit.subscribe`.

    python examples/audit.py                                  # in memory
    TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 python examples/audit.py

* Every process that imports this module publishes its job events to the broker's audit stream
  (on Redis a capped stream: here the newest 10,000 events are kept).
* The `dashboard` group reads each event once and acknowledges it.
* The `pager` group reads the same events on its own. Its first consumer does not acknowledge a
  `failed` event (it "dies"); after `claim_after` seconds another consumer gets it again.

Here the worker runs in this process, to keep the example one file; run `taskit worker
examples.audit:app` elsewhere on Redis and the subscribers here see its events just the same.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio

import taskit.audit
from taskit import App, Fail

app = App()  # TASKIT_BROKER_URL, else memory://
taskit.audit.publish(app, maxlen=10_000)


@app.task
async def resize(image: str) -> str:
    return f"{image} resized"


@app.task(max_retries=0)
async def charge(order: str) -> None:
    raise Fail(f"card declined for {order}")


async def main() -> None:
    await resize.enqueue("cat.png")
    await charge.enqueue("A-17")
    await app.worker(concurrency=1).run(burst=True)
    with anyio.fail_after(10):
        await dashboard()
        await pager()
    await app.close()


async def dashboard() -> None:
    async with aclosing(taskit.audit.subscribe(app, group="dashboard", poll=0.05)) as events:
        for _ in range(6):
            delivery = await anext(events)
            event = delivery.event
            name = event.task.rpartition(".")[2]
            print(f"dashboard  {name:<7} {event.kind:<10} {event.error or ''}".rstrip())
            await delivery.ack()


async def pager() -> None:
    def consumer(name: str) -> aclosing[AsyncGenerator[taskit.audit.Delivery, None]]:
        events = taskit.audit.subscribe(
            app, group="pager", consumer=name, claim_after=0.2, poll=0.05
        )
        return aclosing(events)

    async with consumer("p1") as events:
        async for delivery in events:
            if delivery.event.kind == "failed":
                print("pager p1   got failed, and dies before it acknowledges")
                break
            await delivery.ack()
    await anyio.sleep(0.3)  # past claim_after
    async with consumer("p2") as events:
        again = await anext(events)
        print(f"pager p2   got {again.event.kind} again: {again.event.error}")
        await again.ack()


if __name__ == "__main__":
    anyio.run(main)
