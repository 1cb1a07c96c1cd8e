"""Dedup windows and pausing a queue.

    python examples/dedup.py                                  # in memory
    TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 python examples/dedup.py

* A burst of webhooks: five pushes to repository `api` and one to `web`. `sync_repo` is
  debounced per repository: one job per repository runs, with the last push's arguments, once
  the pushes have been quiet for its window.
* `usage_report` is throttled per customer: a second request within the hour gets the job of
  the first (`job.duplicate` says so), which has already run.
* The `emails` queue is paused: its job waits, and runs as soon as the queue is resumed.
"""

from __future__ import annotations

import anyio

from taskit import App, Debounce, Throttle

app = App()  # TASKIT_BROKER_URL, else memory://

synced: list[str] = []
reports: list[str] = []
sent: list[str] = []


@app.task(dedup=Debounce(0.3, key="repo"))
async def sync_repo(repo: str, commit: str) -> str:
    synced.append(f"{repo}@{commit}")
    return commit


@app.task(dedup=Throttle(3600, key="customer"))
async def usage_report(customer: str) -> str:
    reports.append(customer)
    return f"report for {customer}"


@app.task(queue="emails")
async def send_email(to: str) -> None:
    sent.append(to)


async def main() -> None:
    pushes = [await sync_repo.enqueue("api", f"c{n}") for n in range(1, 6)]
    pushes.append(await sync_repo.enqueue("web", "w1"))
    jobs = {job.id for job in pushes}
    print(f"webhooks: {len(pushes)} received, {len(jobs)} jobs, "
          f"{sum(job.duplicate for job in pushes)} merged")  # fmt: skip

    await app.pause("emails")
    email = await send_email.enqueue("ada@example.com")
    first = await usage_report.enqueue("acme")
    async with app.worker(queues=["default", "emails"]):
        await app.result(first.id, timeout=10)
        again = await usage_report.enqueue("acme")
        print(f"report again: duplicate={again.duplicate} same job={again.id == first.id} "
              f"status={again.status.value}")  # fmt: skip
        for job_id in jobs:
            await app.result(job_id, timeout=10)
        waiting = (await app.stats(["emails"]))["emails"].queued
        print(f"emails paused: {waiting} waiting, sent {sent}")
        await app.resume("emails")
        await app.result(email.id, timeout=10)
        print(f"emails resumed: sent {sent}")
    print(f"synced: {sorted(synced)}")
    print(f"reports: {reports}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
