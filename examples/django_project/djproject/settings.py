"""Settings of the example Django project: Django 6's tasks framework on taskit.

The broker comes from ``TASKIT_BROKER_URL`` (the App reads it: OPTIONS name neither ``app`` nor
``broker_url``). The database is a SQLite file (``SHOP_SQLITE``), or PostgreSQL with
``SHOP_DATABASE=postgres`` (``SHOP_PG_*``, the local server's ``test`` database by default).
"""

from __future__ import annotations

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["shop"]

TASKS = {
    "default": {
        "BACKEND": "taskit.django.TaskitBackend",
        "QUEUES": ["default", "emails", "slow"],
        # A job is stored only when the transaction that enqueued it commits.
        "OPTIONS": {"enqueue_on_commit": True},
    }
}

if os.environ.get("SHOP_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("SHOP_PG_NAME", "test"),
            "HOST": os.environ.get("SHOP_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("SHOP_PG_PORT", "5432"),
            "USER": os.environ.get("SHOP_PG_USER", "postgres"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SHOP_SQLITE", "shop.sqlite3"),
        }
    }
