"""What a Redis failure means to a caller: the one place that maps errors to taskit's.

Both transports raise redis-py's exception types (``transport``), so the mapping is written
once: ``ErrorMap.translate`` turns a failure into ``BrokerAuthenticationError`` (credentials
refused, or a command refused by the user's ACL: the message names which),
``BrokerOutOfMemoryError`` (over ``maxmemory``), ``BrokerValueTooLargeError`` (an argument
over ``proto-max-bulk-len``), ``BrokerOutcomeUnknownError`` (the command was sent and its reply
lost: it may have run),
``BrokerConnectionError`` (nothing was sent) or ``BrokerError`` (another error reply). No
password is ever shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.exceptions as rexc

from taskit.config import redact_url
from taskit.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    BrokerError,
    BrokerOutcomeUnknownError,
    BrokerOutOfMemoryError,
    BrokerValueTooLargeError,
)

__all__ = ["OOM_REPLY", "ErrorMap", "Refusal", "ReplyLost", "error_of", "refusal_of"]

#: What Redis says when it refuses a write over ``maxmemory``: the reply itself starts with it
#: (``OOM ...``), and so does a script's error on Redis 7; Redis 6 wraps it inside a script error
#: (``ERR Error running script ... -OOM command not allowed ...``).
OOM_REPLY = "OOM command not allowed"
#: How Redis refuses an argument over ``proto-max-bulk-len`` (it then drops the connection).
_TOO_LARGE = "Protocol error: invalid bulk length"
#: What a cluster node says to SELECT of a database other than 0.
_CLUSTER_DB = "SELECT is not allowed in cluster mode"
#: redis-py's messages for a failure after the command was written (reading its reply).
_READING = ("Timeout reading", "Error while reading", "Connection closed by server")


#: Error replies that mean the command did not run here, and may run elsewhere or later: the
#: key's slot is served by another node (MOVED; ASK while it migrates), its keys are half
#: migrated (TRYAGAIN), the cluster cannot serve it (CLUSTERDOWN), this node is a replica
#: (READONLY; MASTERDOWN on a replica cut off from its master), it is loading its data
#: (LOADING), or it lost the replicas ``min-replicas-to-write`` asks for (NOREPLICAS); a
#: blocked BLPOP ended by a role change (UNBLOCKED) took nothing.
_REFUSALS = frozenset(
    {
        "MOVED",
        "ASK",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "READONLY",
        "MASTERDOWN",
        "LOADING",
        "NOREPLICAS",
        "UNBLOCKED",
    }
)
#: redis-py's exceptions for those replies (its parser drops the code from the text); most
#: specific first.
_REDISPY: tuple[tuple[type[rexc.RedisError], str], ...] = (
    (rexc.MovedError, "MOVED"),  # a subclass of AskError
    (rexc.AskError, "ASK"),
    (rexc.TryAgainError, "TRYAGAIN"),
    (rexc.MasterDownError, "MASTERDOWN"),
    (rexc.ClusterDownError, "CLUSTERDOWN"),
    (rexc.ReadOnlyError, "READONLY"),
    (rexc.BusyLoadingError, "LOADING"),
)
#: What a Redis 6 script says when its first write meets a replica (it wrote nothing).
_SCRIPT_READONLY = "-READONLY "


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command did not run where it was sent (``refusal_of``); ``kind`` is the reply's
    code (``MOVED``, ``ASK``, ...) or ``refused`` (the connection could not be made, so nothing
    was sent). ``host``/``port``: where MOVED or ASK points (else None)."""

    kind: str
    host: str | None = None
    port: int | None = None
    text: str = ""


def refusal_of(exc: BaseException) -> Refusal | None:
    """The ``Refusal`` an error reply or a failed connect means, or None when the command may
    have run (a lost reply) or failed for another reason (a script error, bad credentials)."""
    if isinstance(exc, rexc.AuthenticationError | ReplyLost):
        return None
    for kind, code in _REDISPY:  # redis-py's parser takes the code off the message
        if isinstance(exc, kind):
            return refusal_of(rexc.ResponseError(f"{code} {exc}"))
    if isinstance(exc, rexc.ConnectionError) and not isinstance(exc, rexc.ResponseError):
        return Refusal("refused", text=str(exc)) if not _reply_lost(exc) else None
    if not isinstance(exc, rexc.ResponseError):
        return None
    text = str(exc)
    code = text.split(" ", 1)[0]
    if code not in _REFUSALS:
        return Refusal("READONLY", text=text) if _SCRIPT_READONLY in text else None
    if code in ("MOVED", "ASK"):  # MOVED <slot> <host>:<port>
        where = text.split(" ")[2] if text.count(" ") >= 2 else ""
        host, _, port = where.rpartition(":")
        if host and port.isdigit():
            return Refusal(code, host.strip("[]"), int(port), text)
        return Refusal("CLUSTERDOWN", text=text)  # no address: ask the cluster
    return Refusal(code, text=text)


class ReplyLost(rexc.ConnectionError):
    """The command was written, then its connection failed or its reply did not come in time:
    it may or may not have run."""


class Dropped(ReplyLost):
    """``ReplyLost`` because this process closed the connection itself (``Wire.close``: a
    blocking wait cut short drops its connection, and the waits pipelined behind it on that
    connection with it), not because the server or the network failed."""


def error_of(reply: rexc.ResponseError) -> rexc.RedisError:
    """The redis-py exception for an error reply (as redis-py itself would raise it)."""
    text = str(reply)
    code = text.split(" ", 1)[0]
    if code == "NOSCRIPT":
        return rexc.NoScriptError(text)
    if OOM_REPLY in text:
        return rexc.OutOfMemoryError(text)
    if code in ("WRONGPASS", "NOAUTH") or text.startswith("invalid password"):
        return rexc.AuthenticationError(text)
    if code == "NOPERM":
        return rexc.NoPermissionError(text)
    return reply


def _reply_lost(exc: BaseException) -> bool:
    """Whether ``exc`` came after the command was written: the fast transport says so with
    ``ReplyLost``; redis-py only in its messages (a read that timed out or found the
    connection closed)."""
    if isinstance(exc, ReplyLost):
        return True
    return isinstance(exc, rexc.ConnectionError | rexc.TimeoutError) and str(exc).startswith(
        _READING
    )


def _tls_hint(text: str) -> str:
    """What to do about a server certificate the client refused, or nothing."""
    if "CERTIFICATE_VERIFY_FAILED" not in text:
        return ""
    if "Hostname mismatch" in text or "IP address mismatch" in text:
        return (
            ". The server's certificate does not name the URL's host: connect by a name it"
            " carries (or, knowingly, ?ssl_check_hostname=false)"
        )
    return (
        ". The server's certificate is not signed by a CA this client trusts: a private or"
        " self-signed CA goes in the URL, ?ssl_ca_certs=/path/to/ca.pem (or ssl_ca_path,"
        " ssl_ca_data), and must be the one that signed it (docs/deployment.md)"
    )


class ErrorMap:
    """The mapping for one Redis URL (named, password redacted, in every message)."""

    def __init__(self, url: str, password: str | None) -> None:
        self._where = redact_url(url)
        self._password = password

    def translate(self, exc: BaseException) -> BrokerError:
        """``exc`` (a redis-py error or an ``OSError``) as taskit's error (module docstring)."""
        where = self._where
        if isinstance(exc, rexc.NoPermissionError):  # the login worked; the ACL said no
            return BrokerAuthenticationError(
                f"Redis at {where} refused a command to this user (its ACL does not allow it; "
                f"docs/deployment.md lists what taskit needs): {self._scrub(exc)}"
            )
        if isinstance(exc, rexc.AuthenticationError):
            return BrokerAuthenticationError(
                f"Redis at {where} refused the credentials: {self._scrub(exc)}"
            )
        if isinstance(exc, rexc.OutOfMemoryError) or (
            isinstance(exc, rexc.ResponseError) and OOM_REPLY in str(exc)
        ):
            return BrokerOutOfMemoryError(
                f"Redis at {where} is out of memory: used memory is over "
                "'maxmemory' and nothing may be evicted (maxmemory-policy noeviction), so it "
                "refused to store more; nothing of this call was stored. Free memory or raise "
                "maxmemory (docs/operations.md)."
            )
        if isinstance(exc, rexc.ResponseError) and _TOO_LARGE in str(exc):
            return BrokerValueTooLargeError(
                f"Redis at {where} refused a value bigger than it takes in one "
                f"argument (proto-max-bulk-len, 512 MB by default): {self._scrub(exc)}; nothing "
                "of this call was stored"
            )
        if isinstance(exc, rexc.ResponseError) and _CLUSTER_DB in str(exc):
            return BrokerError(
                f"Redis at {where} is a cluster node, and a Redis Cluster has only database "
                "0: drop the database from the URL (use redis+cluster://host:port,... and keep "
                "apps apart with ?prefix=)"
            )
        if _reply_lost(exc):
            return BrokerOutcomeUnknownError(
                f"Redis at {where} did not reply: {self._scrub(exc)}. The command"
                " was sent, so its outcome is unknown: it may have run. Retry only what is safe"
                " to repeat, e.g. an enqueue with the same job id (idempotent while the job is"
                " unfinished)"
            )
        if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
            return BrokerConnectionError(
                f"Redis at {where} cannot be reached: {self._scrub(exc)}{_tls_hint(str(exc))}"
            )
        return BrokerError(f"Redis at {where} failed: {self._scrub(exc)}")

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return text.replace(self._password, "***") if self._password else text
