"""Requests of limits (``taskit.limits``): store definitions, read them and their usage, and wake
the queues whose held-back jobs a limit let out of line. Each limit definition travels as text,
``<concurrency>|<rate>|<per ms>|<burst>`` (``''`` for none), as ``{p}:limits`` holds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests.request import Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.limits import LimitSpec, LimitUsage

__all__ = ["LimitsGet", "LimitsSet", "LimitsUsage", "Wake", "spec_from_text", "spec_text"]


def spec_text(spec: LimitSpec) -> str:
    """``spec`` as the scripts read it (``per`` in ms, six decimals: never early by more)."""

    def part(value: int | None) -> str:
        return "" if value is None else str(value)

    per_ms = f"{spec.per * 1000:.6f}"
    return f"{part(spec.concurrency)}|{part(spec.rate)}|{per_ms}|{part(spec.burst)}"


def spec_from_text(raw: bytes) -> LimitSpec | None:
    """The definition stored as ``raw``; None for text this layout never writes (damaged)."""
    try:
        concurrency, rate, per_ms, burst = raw.decode().split("|")
        return LimitSpec(
            concurrency=int(concurrency) if concurrency else None,
            rate=int(rate) if rate else None,
            per=float(per_ms) / 1000,
            burst=int(burst) if burst else None,
        )
    except (UnicodeDecodeError, ValueError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class LimitsSet(Request[list[str]]):
    """Store ``specs`` (None: delete), keeping stored ones when ``only_new``."""

    script: ClassVar[ScriptName] = "limits-set"
    specs: Mapping[str, LimitSpec | None]
    only_new: bool

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, *k.limit_keys()]

    def args(self) -> list[Arg]:
        args: list[Arg] = ["1" if self.only_new else "0"]
        for name, spec in self.specs.items():
            args += [name, "" if spec is None else spec_text(spec)]
        return args

    def answer(self, reply: Any) -> list[str]:
        """The queues that got jobs let out of line (to wake)."""
        return [name.decode(errors="replace") for name in reply]


@dataclass(frozen=True, slots=True)
class LimitsGet(Request[dict[str, LimitSpec]]):
    script: ClassVar[ScriptName] = "limits-get"

    def keys(self, k: Keys) -> list[str]:
        return [k.limits]

    def args(self) -> list[Arg]:
        return []

    def answer(self, reply: Any) -> dict[str, LimitSpec]:
        """Every readable definition by name (a damaged one is left out)."""
        out = {}
        for raw_name, raw in zip(reply[::2], reply[1::2], strict=True):
            spec = spec_from_text(raw)
            if spec is not None:
                out[raw_name.decode(errors="replace")] = spec
        return out


@dataclass(frozen=True, slots=True)
class LimitsUsage(Request[LimitUsage]):
    script: ClassVar[ScriptName] = "limits-usage"
    name: str
    top: int

    def keys(self, k: Keys) -> list[str]:
        limits, holding, waiting = k.limit_keys()[:3]
        return [limits, holding, waiting]

    def args(self) -> list[Arg]:
        return [self.name, self.top]

    def answer(self, reply: Any) -> LimitUsage:
        raw, running, waiting = reply

        def counts(flat: Sequence[Any]) -> dict[str, int]:
            return {k.decode(errors="replace"): int(n) for k, n in zip(flat[::2], flat[1::2],
                                                                         strict=True)}  # fmt: skip

        spec = spec_from_text(raw) if raw else None
        return LimitUsage(name=self.name, spec=spec, running=counts(running),
                          waiting=counts(waiting))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Wake(Request[None]):
    """Wake a blocked reserve of each of ``queues``."""

    script: ClassVar[ScriptName] = "wake"
    queues: Sequence[str]

    def keys(self, k: Keys) -> list[str]:
        return [k.wake(queue) for queue in self.queues]

    def args(self) -> list[Arg]:
        return []

    def answer(self, reply: Any) -> None:
        return None
