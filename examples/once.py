"""A side effect done once per key, however often its job runs: `app.once(key)`.

    python examples/once.py                                   # in memory
    TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 python examples/once.py

* `checkout` charges the card, then emails a receipt, each under a key of its own. The mailer
  fails the first time: the receipt's key is released and the job retried; the retry finds the
  charge done and skips it, and sends the receipt. The customer is charged once.
* The same checkout is enqueued twice (a double click): the second job skips the charge too.
* `notify` is a sync handler: `with app.once(...)` works the same way there.
"""

from __future__ import annotations

import anyio

from taskit import App, Fixed

app = App()  # TASKIT_BROKER_URL, else memory://

charges: list[str] = []
receipts: list[str] = []
texts: list[str] = []
mailer_failures = 1


async def send_receipt(order: str) -> None:
    global mailer_failures
    if mailer_failures:
        mailer_failures -= 1
        raise ConnectionError("SMTP server not answering")
    receipts.append(order)


@app.task(max_retries=3, backoff=Fixed(0.01))
async def checkout(order: str, cents: int) -> str:
    async with app.once(f"charge:{order}", ttl=7 * 86_400) as first:
        if first:
            charges.append(f"{order}: {cents / 100:.2f}")  # the payment gateway, in real life
    async with app.once(f"receipt:{order}") as first_receipt:
        if first_receipt:
            await send_receipt(order)  # raises: the key is released, and the retry sends it
    return "charged" if first else "already charged"


@app.task(max_retries=3, backoff=Fixed(0.01))
def notify(phone: str, text: str) -> bool:
    with app.once(f"sms:{phone}:{text}") as first:
        if first:
            texts.append(f"{phone}: {text}")
    return first


async def main() -> None:
    jobs = [
        await checkout.enqueue("A-17", 4200),
        await checkout.enqueue("A-17", 4200),  # the double click
        await notify.enqueue("+15550100", "your order shipped"),
        await notify.enqueue("+15550100", "your order shipped"),
    ]
    stats = await app.worker(concurrency=1).run(burst=True)
    for job in jobs:
        final = await app.get_job(job.id)
        assert final is not None
        assert final.result is not None
        name = final.task.rpartition(".")[2]
        print(f"{name:<9} {final.status.value:<10} attempts={final.attempts}  {final.result.value}")
    print(f"charges: {charges}")
    print(f"receipts: {receipts}")
    print(f"texts: {texts}")
    print(f"worker: {stats}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
