"""gunicorn settings for every Flask app of ``benchmarks/web.py``: where a producer is closed.

gunicorn calls ``worker_exit`` in each web process as it stops; the app module's ``shutdown()``
(if it has one) closes its producer there (taskit: ``App.close_sync()``).
"""

from __future__ import annotations

import sys
from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    module = sys.modules.get(str(worker.app.cfg.wsgi_app or "").partition(":")[0])
    shutdown = getattr(module, "shutdown", None)
    if shutdown is not None:
        shutdown()
