"""The Lua script registry: each ``lua/<name>-<numkeys>.lua`` loaded once, called by SHA.

A command script is one file whose name ends in its key count (``cancel-16.lua``) or in ``n``
when the count depends on the batch (``reserve-n.lua``). Files whose name starts with ``_`` hold
shared helpers: a command pastes one in with a line ``-- @include _common.lua``, which pastes
only the helpers the command uses (``includes.expand``: Redis runs a script's whole text on
every call). The expanded source is what Redis sees and what the SHA is computed from.

Calls go out as ``EVALSHA``; a ``NOSCRIPT`` answer (Redis restarted, ``SCRIPT FLUSH``, failover)
loads the script and retries, transparently (a few times: the server may change between the
load and the call when a failover or reshard is followed). Nothing else is retried here. What each
script takes (KEYS and ARGV, in the order its header lists them) is built in ``requests``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from taskit.broker.redis.includes import expand
from taskit.broker.redis.transport import Arg, Blocking, Transport
from taskit.broker.redis.transport.fast import FastClient

__all__ = ["SCRIPTS", "Script", "ScriptName", "Scripts"]

#: Every command script, by the name before its key count.
ScriptName = Literal[
    "announce",
    "browse-done",
    "browse-lex",
    "browse-list",
    "browse-scan",
    "browse-zset",
    "cancel",
    "counts",
    "dead-letters",
    "enqueue",
    "enqueue-plain",
    "extend",
    "forget",
    "get",
    "limits-get",
    "limits-set",
    "limits-usage",
    "live",
    "locate",
    "once-begin",
    "once-end",
    "pause",
    "progress",
    "promote",
    "purge",
    "purge-dead",
    "reclaim",
    "requeue-dead",
    "reserve",
    "settle",
    "shards",
    "stats",
    "wake",
    "withdraw",
    "workflow-cancel",
    "workflow-get",
    "workflow-results",
]

#: NOSCRIPT answers loaded for and retried in one call: more than one when the server changed
#: between the load and the call (a failover or a reshard followed in between).
_LOADS = 3

_FILE = re.compile(r"^(?P<name>[a-z][a-z-]*?)-(?P<keys>\d+|n)\.lua$")
#: A command refused by the ACL inside a script: Redis 7.0 says ``ERR The user executing the
#: script can't run this command or subcommand script: <sha>, on @user_script:<line>.`` (the
#: command unnamed); later ones ``NOPERM ...``. The line names it (``_refused_inside``).
_SCRIPT_ACL = re.compile(r"(NOPERM|user executing the script can't).*@user_script:(?P<line>\d+)")
_CHUNKED = re.compile(r"\(([A-Z]+)\) script: ")
_LITERAL = re.compile(r"'([A-Z]+)'")


@dataclass(frozen=True, slots=True)
class Script:
    """One command script: its expanded source, SHA-1 and declared key count (None: varies)."""

    name: str
    source: bytes
    sha: str
    numkeys: int | None


class Scripts:
    """The scripts of the ``taskit.broker`` package; one instance serves any client.

    Each script is expanded (``includes.expand``) and hashed on its first use, not all at
    import: expanding the 37 of them costs about 70 ms of a process's start, and a worker uses
    a handful (issue 19). Expanding is deterministic, so two threads expanding the same script
    at once store equal values."""

    def __init__(self) -> None:
        folder = resources.files("taskit.broker.redis").joinpath("lua")
        self._texts = {entry.name: entry.read_text("utf-8") for entry in folder.iterdir()}
        self._files: dict[str, tuple[str, str]] = {}  # name -> (file name, key count)
        for filename in self._texts:
            match = _FILE.match(filename)
            if not filename.startswith("_") and match is not None:
                self._files[match.group("name")] = (filename, match.group("keys"))
        self._scripts: dict[str, Script] = {}

    def raise_for(self, name: ScriptName, reply: Any) -> Any:
        """A raw reply of script ``name`` read by hand (sent with ``FastClient.send``): itself,
        or raised as ``call`` raises that error reply (an ACL refusal inside the script named,
        ``NoPermissionError``)."""
        try:
            return FastClient.raise_for(reply)
        except ResponseError as exc:
            raise _refused_inside(self[name], exc) from None

    def __getitem__(self, name: ScriptName) -> Script:
        script = self._scripts.get(name)
        return script if script is not None else self._expand(name)

    def _expand(self, name: str) -> Script:
        filename, keys = self._files[name]
        source = expand(self._texts[filename], self._texts).encode()
        script = Script(
            name=name,
            source=source,
            sha=hashlib.sha1(source).hexdigest(),
            numkeys=None if keys == "n" else int(keys),
        )
        self._scripts[name] = script
        return script

    @property
    def names(self) -> list[str]:
        """The names of every command script."""
        return sorted(self._files)

    async def call(
        self, client: Transport, name: ScriptName, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """Run script ``name`` with ``keys`` and ``args``; its raw reply.

        Raises ``ValueError`` if a fixed-key script gets the wrong number of keys, and whatever
        the transport raises for a failed call (connection errors, script errors), except
        NOSCRIPT.
        """
        script = self._for(name, keys)
        try:
            for _ in range(_LOADS):
                try:
                    return await client.execute("EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    _check_loaded(script, await client.execute("SCRIPT", "LOAD", script.source))
            return await client.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            raise _refused_inside(script, exc) from None

    def call_blocking(
        self, client: Blocking, name: ScriptName, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """``call`` on a blocking connection (same errors)."""
        script = self._for(name, keys)
        try:
            for _ in range(_LOADS):
                try:
                    return client.execute("EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    _check_loaded(script, client.execute("SCRIPT", "LOAD", script.source))
            return client.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            raise _refused_inside(script, exc) from None

    async def call_then(
        self,
        client: FastClient,
        name: ScriptName,
        keys: Sequence[str],
        args: Sequence[Arg],
        then: Sequence[Arg],
        wait: float,
    ) -> tuple[Any, Any]:
        """``call``, with the command ``then`` sent right behind the script on the same
        connection (``FastClient.execute_then``; it may block ``wait`` seconds): both replies,
        ``then``'s raw (an error reply a ``ResponseError`` instance). Same errors as ``call``."""
        script = self._for(name, keys)
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            for _ in range(_LOADS):
                try:
                    return await client.execute_then(command, then, wait)
                except NoScriptError:
                    _check_loaded(script, await client.execute("SCRIPT", "LOAD", script.source))
            return await client.execute_then(command, then, wait)
        except ResponseError as exc:
            raise _refused_inside(script, exc) from None

    def call_blocking_then(
        self,
        client: Blocking,
        name: ScriptName,
        keys: Sequence[str],
        args: Sequence[Arg],
        then: Sequence[Arg],
        wait: float,
    ) -> tuple[Any, Any]:
        """``call_then`` on a blocking connection (same errors)."""
        script = self._for(name, keys)
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            for _ in range(_LOADS):
                try:
                    return client.execute_then(command, then, wait)
                except NoScriptError:
                    _check_loaded(script, client.execute("SCRIPT", "LOAD", script.source))
            return client.execute_then(command, then, wait)
        except ResponseError as exc:
            raise _refused_inside(script, exc) from None

    def _for(self, name: ScriptName, keys: Sequence[str]) -> Script:
        script = self[name]
        if script.numkeys is not None and len(keys) != script.numkeys:
            raise ValueError(f"script {name} takes {script.numkeys} keys, got {len(keys)}")
        return script


def _refused_inside(script: Script, exc: ResponseError) -> ResponseError:
    """``exc`` itself, or, for a command the ACL refused inside ``script``, a
    ``NoPermissionError`` naming the script, the command and its line."""
    text = str(exc)
    found = _SCRIPT_ACL.search(text)
    if found is None:
        return exc
    lines = script.source.decode().splitlines()
    number = int(found.group("line"))
    line = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
    # A helper that runs a command given to it (each_chunk) appends its name: `(HSET)`; its
    # own line would show only the helper.
    chunked = _CHUNKED.search(text)
    command = chunked or _LITERAL.search(line)
    what = f" refused {command.group(1)}" if command else ""
    where = "" if chunked else f" (line {number}: {line})"
    return NoPermissionError(f"script {script.name}{what}{where}: {text}")


def _check_loaded(script: Script, reply: Any) -> None:
    """The server hashes what it got: a SHA other than ours is a bug here."""
    loaded = reply.decode() if isinstance(reply, bytes) else str(reply)
    if loaded != script.sha:
        raise RuntimeError(f"Redis gave script {script.name} SHA {loaded}, expected {script.sha}")


#: The scripts of this package, each expanded once on first use (one instance serves every
#: broker).
SCRIPTS = Scripts()
