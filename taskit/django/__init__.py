"""Django 6's tasks framework on taskit: ``pip install 'taskit[django]'`` (Python >= 3.12).

``TaskitBackend`` (``taskit.django.backend``) is a ``django.tasks`` backend: Django ``@task``
functions enqueue through a taskit App, run on ``taskit worker taskit.django.worker:app``
(``taskit.django.runner``), and read back as Django ``TaskResult`` objects
(``taskit.django.results``). Nothing else in taskit imports this package; importing it without
Django 6 raises an ``ImportError`` that names the extra. Guide: "Django tasks backend".
"""

try:
    import django.tasks  # noqa: F401 - only to say what is missing
except ImportError as exc:  # pragma: no cover - Django 6 is installed where this runs
    raise ImportError(
        "taskit.django needs Django >= 6.0, hence Python >= 3.12: pip install 'taskit[django]'"
    ) from exc

from taskit.django.backend import TaskitBackend
from taskit.django.runner import JOB_TYPE, DjangoTaskHandler, RefusedTaskError

__all__ = ["JOB_TYPE", "DjangoTaskHandler", "RefusedTaskError", "TaskitBackend"]
