"""The memory broker: ``MemoryBroker`` (in ``broker``), its state (``state``) and its cross-thread
wake-ups (``wakeup``)."""

from __future__ import annotations

from taskit.broker.memory.broker import MemoryBroker

__all__ = ["MemoryBroker"]
