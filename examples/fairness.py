"""Fair queues: one tenant's backlog does not starve the others (`fair_by`).

    python examples/fairness.py                                   # in memory
    TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 python examples/fairness.py

Tenant `acme` enqueues 200 reports first; then three small tenants enqueue 3 each. On a plain
queue the small tenants wait behind all of acme's reports. With `fair_by="tenant"` each job's
group is its `tenant` argument, and the queue serves the tenants with waiting jobs in turns, one
report each per turn: the small tenants are done after 12 reports, whatever acme's backlog.
"""

from __future__ import annotations

import anyio

from taskit import App
from taskit.task import Task

app = App()  # TASKIT_BROKER_URL, else memory://

ran: list[str] = []  # the tenant of each report, in the order the worker ran them


@app.task(queue="fair", fair_by="tenant")
def report(tenant: str, number: int) -> None:
    ran.append(tenant)


@app.task(queue="plain")
def plain_report(tenant: str, number: int) -> None:
    ran.append(tenant)


async def backlog(task: Task[[str, int], None]) -> None:
    await app.enqueue_many([task.prepare("acme", n) for n in range(200)])
    for tenant in ("bakery", "clinic", "dojo"):
        await app.enqueue_many([task.prepare(tenant, n) for n in range(3)])


async def small_tenants_done_after(queue: str) -> int:
    ran.clear()
    await app.worker(queues=[queue], concurrency=1).run(burst=True)
    return max(i for i, tenant in enumerate(ran, 1) if tenant != "acme")


async def main() -> None:
    await backlog(plain_report)
    await backlog(report)
    print(f"plain queue: small tenants done after {await small_tenants_done_after('plain')} of 209")
    print(f"fair queue:  small tenants done after {await small_tenants_done_after('fair')} of 209")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
