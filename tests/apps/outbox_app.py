"""The App that the outbox's CLI and chaos tests run in `taskit worker` / `taskit outbox-relay`
subprocesses. Broker: ``TASKIT_BROKER_URL``. Its one task, ``outbox.record``, appends its ``key``
to ``$OUTBOX_LEDGER/<pid>.ledger`` (``O_APPEND``, one ``os.write`` a line: a line is whole or
absent even when the process is killed), so a test counts how often each job ran."""

from __future__ import annotations

import os
from pathlib import Path

from taskit import App

app = App()


@app.task(name="outbox.record", queue="outbox", max_retries=0)
def record(key: str) -> str:
    ledger = Path(os.environ["OUTBOX_LEDGER"]) / f"{os.getpid()}.ledger"
    fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)
    return key
