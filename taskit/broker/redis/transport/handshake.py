"""The replies to a connection's handshake (``Target.handshake``: AUTH, SELECT, CLIENT SETNAME),
read the same way by every transport.

``CLIENT SETNAME`` is optional: it only names the connection in ``CLIENT LIST``, so a user whose
ACL does not allow it (``NOPERM``) still connects; the refusal is logged once per client, at
debug. Any other error reply fails the connect, with the command it answered named
(``AUTH``'s arguments never are). A refused permission, there or on any later command, reads
``<COMMAND>: <the ACL's error>`` (``refused``), so the broker's error says what the ACL refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rexc

from taskit.broker.redis.errors import error_of

__all__ = ["Handshake", "error_for", "refused"]

logger = logging.getLogger(__name__)

#: Commands the ACL names with their subcommand (``CLIENT|SETNAME``), of those taskit sends.
_WITH_SUBCOMMANDS = ("CLIENT", "SCRIPT", "CONFIG", "XGROUP")
#: Handshake commands a connection works without, by their first two words.
_OPTIONAL = {("CLIENT", "SETNAME")}


def _name(command: Sequence[Any]) -> str:
    """The command's name as an ACL spells it: ``EVALSHA``, ``CLIENT|SETNAME``."""
    words = [w.decode() if isinstance(w, bytes) else str(w) for w in command[:2]]
    if len(words) == 2 and words[0].upper() in _WITH_SUBCOMMANDS:
        return f"{words[0]}|{words[1]}".upper()
    return words[0].upper() if words else "?"


def refused(error: rexc.NoPermissionError, command: Sequence[Any]) -> rexc.NoPermissionError:
    """``error`` (an ACL's refusal) with the name of the ``command`` it refused in front."""
    return rexc.NoPermissionError(f"{_name(command)}: {error}")


def error_for(reply: rexc.ResponseError, command: Sequence[Any]) -> rexc.RedisError:
    """The redis-py error of an error ``reply`` to ``command`` (``errors.error_of``), an ACL's
    refusal with the command named."""
    error = error_of(reply)
    return refused(error, command) if isinstance(error, rexc.NoPermissionError) else error


class Handshake:
    """Checks one client's handshake replies (the module docstring); logs the optional
    command's refusal once per client."""

    def __init__(self) -> None:
        self._told = False

    def check(self, command: Sequence[Any], reply: Any, where: str) -> None:
        """Nothing for a good reply or a refused optional command; else raise the redis-py
        error of the reply (``NoPermissionError`` naming the command)."""
        if not isinstance(reply, rexc.ResponseError):
            return
        error = error_of(reply)
        if not isinstance(error, rexc.NoPermissionError):
            raise error
        if tuple(str(w).upper() for w in command[:2]) not in _OPTIONAL:
            raise refused(error, command)
        if not self._told:
            self._told = True
            logger.debug(
                "Redis at %s refused %s to this user (%s): its connections stay unnamed",
                where, _name(command), error,
            )  # fmt: skip
