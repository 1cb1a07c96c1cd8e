"""The Lua script registry: each ``lua/<name>-<numkeys>.lua`` loaded once, called by SHA.

A command script is one file whose name ends in its key count (``cancel-8.lua``) or in ``n``
when the count depends on the batch (``reserve-n.lua``). Files whose name starts with ``_`` hold
shared helpers: a command pastes one in with a line ``-- @include _common.lua``. The expanded
source is what Redis sees and what the SHA is computed from.

Calls go out as ``EVALSHA``; a ``NOSCRIPT`` answer (Redis restarted, ``SCRIPT FLUSH``, failover)
loads the script and retries once, transparently. Nothing else is retried here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = ["Script", "ScriptName", "Scripts"]

#: Every command script, by the name before its key count.
ScriptName = Literal[
    "cancel",
    "dead-letters",
    "enqueue",
    "extend",
    "get",
    "purge",
    "purge-dead",
    "reclaim",
    "requeue-dead",
    "reserve",
    "settle",
    "stats",
]

_FILE = re.compile(r"^(?P<name>[a-z][a-z-]*?)-(?P<keys>\d+|n)\.lua$")
_INCLUDE = re.compile(r"^-- @include (?P<file>_[a-z_]+\.lua)\s*$", re.MULTILINE)

Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """One command script: its expanded source, SHA-1 and declared key count (None: varies)."""

    name: str
    source: bytes
    sha: str
    numkeys: int | None


class Scripts:
    """The loaded scripts of the ``taskit.broker`` package; one instance serves any client."""

    def __init__(self) -> None:
        folder = resources.files("taskit.broker").joinpath("lua")
        texts = {entry.name: entry.read_text("utf-8") for entry in folder.iterdir()}
        self._scripts: dict[str, Script] = {}
        for filename, text in sorted(texts.items()):
            match = _FILE.match(filename)
            if filename.startswith("_") or match is None:
                continue
            source = _INCLUDE.sub(lambda m: texts[m.group("file")], text).encode()
            keys = match.group("keys")
            self._scripts[match.group("name")] = Script(
                name=match.group("name"),
                source=source,
                sha=hashlib.sha1(source).hexdigest(),
                numkeys=None if keys == "n" else int(keys),
            )

    def __getitem__(self, name: ScriptName) -> Script:
        return self._scripts[name]

    @property
    def names(self) -> list[str]:
        """The names of every loaded command script."""
        return sorted(self._scripts)

    async def call(
        self, client: Redis, name: ScriptName, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """Run script ``name`` with ``keys`` and ``args``; its raw reply.

        Raises ``ValueError`` if a fixed-key script gets the wrong number of keys, and whatever
        redis-py raises for a failed call (connection errors, script errors), except NOSCRIPT.
        """
        script = self._scripts[name]
        if script.numkeys is not None and len(keys) != script.numkeys:
            raise ValueError(f"script {name} takes {script.numkeys} keys, got {len(keys)}")
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            loaded = await client.script_load(script.source)
        loaded = loaded.decode() if isinstance(loaded, bytes) else str(loaded)
        if loaded != script.sha:  # the server hashes what it got: a mismatch is a bug here
            raise RuntimeError(f"Redis gave script {name} SHA {loaded}, expected {script.sha}")
        return await client.evalsha(script.sha, len(keys), *keys, *args)
