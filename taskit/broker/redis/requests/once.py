"""Requests of once keys (``taskit.once``): begin a run's hold on a key, end it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.base import OnceState
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests.request import Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg

__all__ = ["OnceBegin", "OnceEnd"]


@dataclass(frozen=True, slots=True)
class OnceBegin(Request[OnceState]):
    script: ClassVar[ScriptName] = "once-begin"
    key: str
    token: str
    hold_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [k.once(self.key)]

    def args(self) -> list[Arg]:
        return [self.token, self.hold_ms]

    def answer(self, reply: Any) -> OnceState:
        """``taken``, ``done`` or ``held``, as the state it names."""
        return OnceState(bytes(reply).decode())


@dataclass(frozen=True, slots=True)
class OnceEnd(Request[bool]):
    script: ClassVar[ScriptName] = "once-end"
    key: str
    token: str
    done_ms: int  # 0: release

    def keys(self, k: Keys) -> list[str]:
        return [k.once(self.key)]

    def args(self) -> list[Arg]:
        return [self.token, self.done_ms]

    def answer(self, reply: Any) -> bool:
        """Whether the run held the key (or had already marked it done)."""
        return bool(reply)
