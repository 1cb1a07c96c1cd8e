"""The App the browser tests and the benchmark show in the dashboard: a few tasks on two
queues and a periodic schedule. Nothing here runs: jobs are moved by ``Seeder`` through the
broker API, as workers would move them."""

from __future__ import annotations

from taskit import App, Settings
from taskit.broker.redis import RedisBroker

__all__ = ["QUEUES", "SCHEDULE", "make_app"]

#: The queues the seeded jobs go to.
QUEUES = ("default", "emails")
#: The periodic schedule the App declares (the Schedules page lists it).
SCHEDULE = "reports.nightly"


def make_app(url: str, prefix: str) -> App:
    """A fresh App on the Redis at ``url`` under key prefix ``prefix``, its tasks registered."""
    app = App(RedisBroker(url, prefix=prefix), settings=Settings())

    @app.task(name="shop.send_email", queue="emails")
    async def send_email(to: str, subject: str) -> None: ...

    @app.task(name="shop.resize")
    async def resize(path: str, width: int) -> str:
        return path

    @app.periodic(every=3600, name=SCHEDULE)
    @app.task(name="reports.nightly")
    async def nightly() -> None: ...

    return app
