"""Django tasks, written for Django alone: nothing here knows taskit (settings.TASKS does)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from django.tasks import TaskContext, task

from shop.models import Order


class PaymentDeclined(Exception):
    pass


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=10)
def send_welcome(email: str, *, name: str = "friend") -> dict[str, Any]:
    return {"to": email, "subject": f"Welcome, {name}!", "tags": ("new", "web")}


@task
def charge(order: str, amount: int) -> None:
    raise PaymentDeclined(f"card declined for {order} ({amount} EUR)")


@task(takes_context=True)
def whoami(context: TaskContext, label: str) -> dict[str, Any]:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}


@task
async def double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


@task
def make_set() -> set[int]:
    return {1, 2}  # not JSON: the task fails, as Django wants return values JSON


@task(queue_name="slow")
def wait_for(path: str) -> str:
    """Runs until ``path`` exists (at most 30 s): long enough to be seen RUNNING."""
    deadline = time.monotonic() + 30
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "released"


@task
def send_receipt(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)  # the row is committed: the job came after it
    return f"receipt for order {order.pk}: {order.total} EUR"


@task(takes_context=True)
def flaky(context: TaskContext) -> int:
    """Fails its first attempt: with the backend's ``max_retries`` it runs again."""
    if context.attempt < 2:
        raise ConnectionError("the mail server hung up")
    return context.attempt
