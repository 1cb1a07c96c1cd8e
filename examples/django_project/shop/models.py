from __future__ import annotations

from django.db import models


class Order(models.Model):
    """An order whose receipt a task sends once the order is committed."""

    total = models.IntegerField()

    class Meta:
        app_label = "shop"
        db_table = "djtaskit_shop_order"  # a prefix of its own on a shared database
