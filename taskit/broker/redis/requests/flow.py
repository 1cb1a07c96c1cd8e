"""Requests of flow control: pausing and resuming a queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests.request import Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg

__all__ = ["Pause"]

# The keys of the queue the pause script takes, in the order of its header.
PAUSE_KINDS = ("fifo", "ranked", "wake", "groups")


@dataclass(frozen=True, slots=True)
class Pause(Request[bool]):
    """Pause ``queue`` (``paused`` True) or resume it; answers whether its state changed."""

    script: ClassVar[ScriptName] = "pause"
    queue: str
    paused: bool

    def keys(self, k: Keys) -> list[str]:
        return [k.paused, *k.of(self.queue, PAUSE_KINDS)]

    def args(self) -> list[Arg]:
        return [self.queue, "1" if self.paused else "0"]

    def answer(self, reply: Any) -> bool:
        return bool(reply == 1)
