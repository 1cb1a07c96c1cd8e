"""gunicorn settings for examples/flask_app.py: `gunicorn -c examples/gunicorn.conf.py ...`.

gunicorn runs this file in its master; the hook runs in each web process as it stops.
"""

from __future__ import annotations

from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    """Close the App this web process imported: its pooled Redis connections, its loop thread."""
    from examples.flask_app import tasks  # the module the web process already imported

    tasks.close_sync()
