"""The outbox's enqueue is typed like task.enqueue: mypy --strict must reject each marked line."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from taskit import App
from taskit.outbox import Outbox, enqueue_in

app = App()
outbox = Outbox()


@app.task
def welcome(user_id: int, *, template: str = "hi") -> str:
    return template


def signup(session: Session) -> None:
    outbox.enqueue(session, welcome, 1, template="x")
    outbox.schedule(session, timedelta(hours=1), welcome, 2)
    enqueue_in(session, welcome.options(queue="mail"), 3)
    outbox.enqueue(session, welcome, "1")  # E: arg-type
    outbox.enqueue(session, welcome, 1, template=2)  # E: arg-type
    outbox.schedule(session, timedelta(hours=1), welcome, user="x")  # E: call-arg
    enqueue_in(session, welcome)  # E: call-arg
