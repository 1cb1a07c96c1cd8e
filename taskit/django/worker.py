"""The App of Django's default task backend, for ``taskit worker``:

    DJANGO_SETTINGS_MODULE=myproject.settings taskit worker taskit.django.worker:app

Reading ``app`` sets Django up (``django.setup()``, from ``DJANGO_SETTINGS_MODULE``) and returns
the App of the ``default`` entry of ``TASKS``, with the Django task runner registered on it.
Importing this module alone does nothing. For another alias, a module of your own does the same
in two lines: ``django.setup()``, then ``app = task_backends["other"].app``.
"""

from __future__ import annotations

import django
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

from taskit.app import App
from taskit.django.backend import TaskitBackend

__all__: list[str] = []  # ``app`` is read through __getattr__


def __getattr__(name: str) -> App:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    django.setup()
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    if not isinstance(backend, TaskitBackend):
        raise TypeError(
            f"TASKS[{DEFAULT_TASK_BACKEND_ALIAS!r}] is a {type(backend).__name__}, not "
            "taskit.django.TaskitBackend"
        )
    return backend.app
