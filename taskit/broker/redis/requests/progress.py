"""The request that stores running jobs' progress (``progress-2.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests.request import Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg

__all__ = ["SetProgress"]


@dataclass(frozen=True, slots=True)
class SetProgress(Request[list[bool]]):
    """Store each job's progress, given as (job id, random part of its token, encoded
    ``Progress``), if that token still holds the running job."""

    script: ClassVar[ScriptName] = "progress"
    updates: Sequence[tuple[str, str, bytes]]

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.progress]

    def args(self) -> list[Arg]:
        args: list[Arg] = []
        for job_id, rand, progress in self.updates:
            args += [job_id, rand, progress]
        return args

    def answer(self, reply: Any) -> list[bool]:
        """Whether each update was stored, in order."""
        return [int(stored) == 1 for stored in reply]
