"""Broker URLs: read and checked once, when ``Settings`` or a broker is built, so that a typo
stops a deployment at start-up with a ``ConfigurationError`` naming the bad part, never later
with a raw ``ValueError`` from a client library.

| form                                                    | options (``?name=value&...``)        |
|---------------------------------------------------------|--------------------------------------|
| ``memory://``                                           | none                                 |
| ``redis://[user:password@]host[:port][/db]``            | ``db``, ``password``, ``prefix``,    |
|                                                         | ``shards``                           |
| ``rediss://...`` (TLS), as ``redis://``                 | those, and ``ssl_*`` (redis-py's)    |
| ``unix://[user:password@]/path/to/socket``              | ``db``, ``password``, ``prefix``,    |
|                                                         | ``shards``                           |
| ``redis+cluster://[user:password@]h1:p1,h2:p2[/0]``     | ``password``, ``prefix``, ``shards`` |
|                                                         | (db 0 only)                          |
| ``rediss+cluster://...`` (TLS), as ``redis+cluster://`` | those, and ``ssl_*``                 |
| ``redis+sentinel://[u:pw@]s1:p1,s2:p2/name[/db]``       | ``db``, ``password``, ``prefix``,    |
|                                                         | ``shards``, ``sentinel_username``,   |
|                                                         | ``sentinel_password``                |
| ``rediss+sentinel://...`` (TLS to the data nodes)       | those, and ``ssl_*``                 |
| any ``redis...://`` URL                                 | ``replicas``, ``replicas_timeout``   |
| ``sqlite:///relative/jobs.db``, ``sqlite:////abs/jobs.db`` | ``synchronous`` (normal, full)    |

A SQLite URL follows SQLAlchemy's convention: what follows ``sqlite:///`` is the file's path,
so three slashes give a path relative to the current directory and four an absolute one
(``sqlite:////var/lib/app/jobs.db``). It takes no host, one option, ``synchronous``
(``normal``, the default: a commit survives the process's crash; ``full``: a power loss too,
an fsync a commit; the result TTL comes from the App's settings as for every broker) and no
``:memory:`` database (one process only: that is ``memory://``); the path may not end in ``/``.
Whether the file can be made there (its directory exists, it is not a directory) is checked
when the broker is built (``check_sqlite_file``).

A cluster URL lists seed nodes (any nodes of the cluster; the broker finds the one serving its
slot); a cluster has only database 0, so any other is refused. A Sentinel URL lists sentinels
and names the master they watch; the user and password are the data nodes', the sentinels'
own (if they ask for one) are ``sentinel_username`` / ``sentinel_password``. ``prefix`` (the
Redis key prefix) and ``shards`` (how many hash-tag shards one queue is spread over, 1 to
``MAX_SHARDS``, default 1: see ``taskit.broker.redis.shards``) are taskit's own, taken off the
URL the Redis client gets; the others go to the client. Imports nothing of taskit but its
errors: ``config`` and the brokers both use it.

``replicas=N`` (taskit's own, a whole number >= 1) makes every write the broker acknowledges
(enqueues, settles, admin writes) wait until N replicas have it (Redis ``WAIT N ms``, sent
right behind the write), else raise ``BrokerOutcomeUnknownError``; ``replicas_timeout`` is how
long that wait may take, in milliseconds (>= 1; 1000 by default; only with ``replicas``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from taskit.errors import ConfigurationError

__all__ = [
    "CLUSTER_SCHEMES",
    "MAX_SHARDS",
    "REDIS_SCHEMES",
    "REPLICAS_TIMEOUT_MS",
    "SENTINEL_SCHEMES",
    "SQLITE_SYNCHRONOUS",
    "BrokerURL",
    "check_prefix",
    "check_sqlite_file",
    "hosts_of",
    "parse_broker_url",
    "redact_url",
    "sentinel_master",
]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
#: taskit's acknowledgement that waits for replicas (``replicas``); taken off the client's URL.
_REPLICA_OPTIONS = frozenset({"replicas", "replicas_timeout"})
#: Milliseconds a ``WAIT`` for replicas may take when ``replicas_timeout`` is not given.
REPLICAS_TIMEOUT_MS = 1000
_OPTIONS = frozenset({"db", "password", "prefix", "shards"}) | _REPLICA_OPTIONS
#: taskit's own options: read here, taken off the URL the Redis client is given.
_OWN = frozenset({"prefix", "shards"}) | _REPLICA_OPTIONS
#: The most shards one queue may be spread over (``?shards=``).
MAX_SHARDS = 64
_SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})
_TLS_SCHEMES = ("rediss", "rediss+cluster", "rediss+sentinel")
# What redis-py's TLS connection takes from a URL (SSLConnection's ssl_* arguments).
_TLS_OPTIONS = frozenset(
    {
        "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data",
        "ssl_ca_path", "ssl_check_hostname", "ssl_min_version", "ssl_ciphers", "ssl_password",
        "ssl_include_verify_flags", "ssl_exclude_verify_flags",
    }
)  # fmt: skip
_CERT_REQS = frozenset({"none", "optional", "required"})
_SQLITE_OPTIONS = frozenset({"synchronous"})
#: A SQLite broker's ``synchronous`` settings: a commit survives the process's crash (normal),
#: or a power loss too (full: an fsync a commit).
SQLITE_SYNCHRONOUS = ("normal", "full")
_BOOLS = frozenset({"0", "1", "true", "false", "yes", "no", "f", "n", "t", "y"})


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """A checked broker URL. ``url`` is what the Redis client is given: the original without
    taskit's own options. ``prefix`` is the ``prefix`` option's value, or None; ``shards`` the
    ``shards`` option's (1 when not given); ``replicas`` the replicas an acknowledged write
    waits for (None: it does not wait), for at most ``replicas_timeout_ms`` milliseconds.
    ``path`` is a ``sqlite://`` URL's file path (as given: relative or absolute), else None;
    ``synchronous`` its ``synchronous`` option, lower-cased (None when not given)."""

    scheme: str
    url: str
    prefix: str | None = None
    shards: int = 1
    replicas: int | None = None
    replicas_timeout_ms: int = REPLICAS_TIMEOUT_MS
    path: str | None = None
    synchronous: str | None = None


def parse_broker_url(url: str) -> BrokerURL:
    """Check ``url`` (see the module's table) and split off taskit's options.

    Raises ``ConfigurationError`` naming the bad part (scheme, port, db, option, ...) for any URL
    a broker could not use; the password is never shown.
    """
    try:
        return _parse(url)
    except ConfigurationError:
        if isinstance(url, str) and _stray_at(url):
            # a password with an unencoded '/', '?' or '#': the "bad part" is a piece of it
            scheme = url.partition("://")[0]
            raise ConfigurationError(
                f"broker URL {scheme}://***@{url.rpartition('@')[2]} does not parse: if its "
                "password holds '/', '?', '#' or '@', percent-encode them (%2F, %3F, %23, %40)"
            ) from None
        raise


def _stray_at(url: str) -> bool:
    """Whether an ``@`` sits after where ``urlsplit`` ends the host (in the path, query or
    fragment): the sign of a user part that holds a delimiter."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return "@" not in parts.netloc and "@" in url.partition("://")[2]


def _parse(url: str) -> BrokerURL:
    if not isinstance(url, str):
        raise ConfigurationError(f"a broker URL must be a string, got {type(url).__name__}")
    shown = redact_url(url)
    if _DROPPED.search(url):
        # urlsplit drops these silently (and the Redis client with it), so the URL checked
        # would not be the URL given: a pasted newline or padding is a typo, not a broker
        raise ConfigurationError(
            f"broker URL {shown!r} has surrounding spaces or a control character "
            "(a tab, newline, ...); remove it, or percent-encode it in a password"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"broker URL {shown} does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path.strip("/") or parts.query or parts.fragment:
            raise ConfigurationError(
                f"broker URL {shown}: memory:// takes no host, path or options"
            )
        return BrokerURL("memory", "memory://")
    if scheme == "sqlite":
        path, synchronous = _sqlite_path(url, parts, shown)
        return BrokerURL("sqlite", url, path=path, synchronous=synchronous)
    if scheme not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"unsupported broker URL scheme {scheme!r} in {shown}: use memory://, sqlite://, "
            "redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, "
            "redis+sentinel:// or rediss+sentinel://"
        )
    if parts.fragment:
        raise ConfigurationError(f"broker URL {shown}: a fragment (#...) means nothing here")
    options = _options(parts.query, scheme, shown)
    if "password" in options and parts.password is not None:
        raise ConfigurationError(
            f"broker URL {shown} gives two passwords, in the user part and as ?password=; give one"
        )
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        db = _many(parts, scheme, shown)
    else:
        db = _where(parts, scheme, shown)
    if "db" in options:
        query_db = _db(options["db"], f"broker URL {shown}: option db")
        if db is not None and db != query_db:
            raise ConfigurationError(
                f"broker URL {shown} names two databases: /{db} in the path and db={query_db}"
            )
    if scheme in CLUSTER_SCHEMES and (db or int(options.get("db", 0))):
        raise ConfigurationError(
            f"broker URL {shown}: a Redis Cluster has only database 0, not "
            f"{db or options['db']}; drop the database from the URL (keys are kept apart by "
            "the key prefix, ?prefix=)"
        )
    prefix = options.get("prefix")
    if prefix is not None:
        check_prefix(prefix, f"broker URL {shown}: option prefix")
    shards = _shards(options["shards"], shown) if "shards" in options else 1
    replicas, replicas_ms = _replicas(options, shown)
    if not _OWN & options.keys():
        return BrokerURL(scheme, url)
    query = "&".join(
        p for p in parts.query.split("&") if p and unquote(p.partition("=")[0]) not in _OWN
    )
    base = url.partition("?")[0]  # not urlunsplit: it writes unix:///x as unix:/x
    return BrokerURL(
        scheme, f"{base}?{query}" if query else base, prefix, shards, replicas, replicas_ms
    )


def _sqlite_path(url: str, parts: SplitResult, shown: str) -> tuple[str, str | None]:
    """The file path of a ``sqlite://`` URL (module docstring), checked for form only, and its
    ``synchronous`` option (None: not given)."""
    if parts.netloc:
        raise ConfigurationError(
            f"broker URL {shown}: sqlite:// takes a file path, not a host {parts.netloc!r} "
            "(sqlite:///relative/jobs.db, or sqlite:////absolute/jobs.db: four slashes)"
        )
    if not url.partition(":")[2].startswith("///"):
        raise ConfigurationError(
            f"broker URL {shown}: write sqlite:///relative/jobs.db (three slashes) or "
            "sqlite:////absolute/jobs.db (four)"
        )
    if parts.fragment:
        raise ConfigurationError(f"broker URL {shown}: a fragment (#...) means nothing here")
    synchronous = _sqlite_options(parts.query, shown)
    path = parts.path[1:]  # the slash after the empty host; the rest is the path
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"broker URL {shown}: sqlite:// needs a file path (sqlite:///jobs.db, relative to "
            "the current directory, or sqlite:////absolute/jobs.db); an in-memory database "
            "serves one process only: use memory://"
        )
    if path.endswith("/"):
        raise ConfigurationError(
            f"broker URL {shown}: the path {path!r} names a directory; name the database file "
            f"in it ({path}jobs.db)"
        )
    return path, synchronous


def _sqlite_options(query: str, shown: str) -> str | None:
    """The ``synchronous`` option of a ``sqlite://`` URL's query, lower-cased (None: not
    given); any other option, or a value other than normal / full, is refused."""
    value = _options(query, "sqlite", shown, known=_SQLITE_OPTIONS).get("synchronous")
    if value is None:
        return None
    if value.strip().lower() not in SQLITE_SYNCHRONOUS:
        raise ConfigurationError(
            f"broker URL {shown}: synchronous={value!r}; use normal (a commit survives the "
            "process's crash) or full (a power loss too: an fsync a commit)"
        )
    return value.strip().lower()


def check_sqlite_file(path: str, shown: str) -> str:
    """``path`` made absolute, if a SQLite database file can be there: it is not a directory
    and its directory exists. Else ``ConfigurationError`` naming the part that is wrong."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ConfigurationError(
            f"broker URL {shown}: {full} is a directory, not a database file; name a file in "
            "it (.../jobs.db)"
        )
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        raise ConfigurationError(
            f"broker URL {shown}: the directory {parent} of the database file does not exist; "
            "create it first"
        )
    return full


def _shards(raw: str, shown: str) -> int:
    """The ``shards`` option's value: a whole number from 1 to ``MAX_SHARDS``."""
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_SHARDS:
        raise ConfigurationError(
            f"broker URL {shown}: option shards must be a whole number from 1 to {MAX_SHARDS} "
            f"(how many hash-tag shards each queue is spread over), got {raw!r}"
        )
    return int(raw)


def _replicas(options: dict[str, str], shown: str) -> tuple[int | None, int]:
    """The ``replicas`` and ``replicas_timeout`` options, checked (module docstring)."""
    raw, raw_ms = options.get("replicas"), options.get("replicas_timeout")
    if raw is None:
        if raw_ms is not None:
            raise ConfigurationError(
                f"broker URL {shown}: option replicas_timeout means nothing without replicas= "
                "(the number of replicas an acknowledged write waits for)"
            )
        return None, REPLICAS_TIMEOUT_MS
    replicas = _whole(raw, f"broker URL {shown}: option replicas (replicas to wait for)")
    wait_ms = REPLICAS_TIMEOUT_MS
    if raw_ms is not None:
        wait_ms = _whole(raw_ms, f"broker URL {shown}: option replicas_timeout (milliseconds)")
    return replicas, wait_ms


def _whole(raw: str, what: str) -> int:
    """``raw`` as a whole number >= 1 (0 would make Redis's WAIT return at once, or never)."""
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise ConfigurationError(f"{what} must be a whole number >= 1, got {raw!r}")
    return int(raw)


def check_prefix(prefix: object, what: str = "prefix") -> str:
    """``prefix`` if it can name Redis keys (non-empty, no braces: it is the Cluster hash tag);
    else ``ConfigurationError`` starting with ``what``."""
    if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"{what} must be a non-empty string without braces, got {prefix!r}"
        )
    return prefix


def _options(
    query: str, scheme: str, shown: str, known: frozenset[str] | None = None
) -> dict[str, str]:
    """The query options by name (values unquoted); each must be known (``known``, by default
    the Redis schemes' options), given once, non-empty."""
    if known is None:
        known = _OPTIONS | _SENTINEL_OPTIONS if scheme in SENTINEL_SCHEMES else _OPTIONS
        if scheme in _TLS_SCHEMES:
            known = known | _TLS_OPTIONS
    found: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = unquote(name)
        if name not in known:
            hint = (
                " (TLS options need rediss://)" if name in _TLS_OPTIONS
                else " (sentinel options need redis+sentinel://)" if name in _SENTINEL_OPTIONS
                else ""
            )  # fmt: skip
            raise ConfigurationError(
                f"broker URL {shown}: unknown option {name!r}{hint}; "
                f"{scheme}:// takes {', '.join(sorted(known))}"
                + (
                    " (the result TTL comes from the App's settings, TASKIT_RESULT_TTL)"
                    if scheme == "sqlite"
                    else ""
                )
            )
        if name in found:
            raise ConfigurationError(f"broker URL {shown}: option {name!r} is given twice")
        if not sep or not raw:
            raise ConfigurationError(f"broker URL {shown}: option {name!r} has no value")
        found[name] = unquote(raw)
    _check_tls(found, shown)
    return found


def _check_tls(options: dict[str, str], shown: str) -> None:
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs.lower() not in _CERT_REQS:
        raise ConfigurationError(
            f"broker URL {shown}: option ssl_cert_reqs must be none, optional or required, "
            f"got {reqs!r}"
        )
    check = options.get("ssl_check_hostname")
    if check is not None and check.lower() not in _BOOLS:
        raise ConfigurationError(
            f"broker URL {shown}: option ssl_check_hostname must be true or false, got {check!r}"
        )


def _where(parts: SplitResult, scheme: str, shown: str) -> int | None:
    """Check host, port and path; the db the path names (redis://, rediss://), or None."""
    try:
        port = parts.port
    except ValueError:
        raw = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ConfigurationError(
            f"broker URL {shown}: port {raw!r} is not a number from 1 to 65535"
        ) from None
    if scheme == "unix":
        if parts.hostname or port is not None:
            raise ConfigurationError(
                f"broker URL {shown}: unix:// takes a socket path, not a host "
                "(unix:///path/to/redis.sock, three slashes)"
            )
        if not parts.path.strip("/"):
            raise ConfigurationError(f"broker URL {shown}: unix:// needs a socket path")
        return None
    if port == 0:
        raise ConfigurationError(f"broker URL {shown}: port 0 is not a number from 1 to 65535")
    path = parts.path
    if path in ("", "/"):
        return None
    return _db(unquote(path[1:]), f"broker URL {shown}: the database /{path[1:]}")


def hosts_of(netloc: str) -> list[tuple[str, int]]:
    """The ``host:port`` pairs of a cluster or Sentinel URL's host part (after any user part),
    in order; the port defaults to 6379. ``ValueError`` naming a bad one."""
    found = []
    for item in netloc.rpartition("@")[2].split(","):
        host, colon, port = item.strip().rpartition(":") if ":" in item else (item, "", "")
        host = host.strip("[]")
        if not host or (colon and not re.fullmatch(r"[0-9]{1,5}", port)):
            raise ValueError(f"host {item!r} is not host[:port]")
        number = int(port) if colon else 6379
        if not 0 < number < 65536:
            raise ValueError(f"port {port!r} of {item!r} is not a number from 1 to 65535")
        found.append((host, number))
    return found


def _many(parts: SplitResult, scheme: str, shown: str) -> int | None:
    """Check a cluster or Sentinel URL's hosts and path; the db its path names, or None."""
    try:
        hosts_of(parts.netloc)
    except ValueError as exc:
        raise ConfigurationError(f"broker URL {shown}: {exc}") from None
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if scheme in CLUSTER_SCHEMES:
        if len(path) > 1 or (path and path[0] and not path[0].isdigit()):
            raise ConfigurationError(
                f"broker URL {shown}: a cluster URL's path is at most a database (/0)"
            )
        return _db(path[0], f"broker URL {shown}: the database") if path and path[0] else None
    if not path or not path[0]:
        raise ConfigurationError(
            f"broker URL {shown}: name the master the sentinels watch "
            f"({scheme}://sentinel1:26379,sentinel2:26379/mymaster)"
        )
    if len(path) > 2:
        raise ConfigurationError(
            f"broker URL {shown}: a Sentinel URL's path is /<master name>[/<db>]"
        )
    if len(path) == 2 and path[1]:
        return _db(path[1], f"broker URL {shown}: the database /{path[1]}")
    return None


def sentinel_master(url: str) -> str:
    """The master name of a checked Sentinel URL (its path's first part)."""
    return unquote(urlsplit(url).path.split("/")[1])


def _db(raw: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]+", raw):
        raise ConfigurationError(f"{what} must be a whole number >= 0, got {raw!r}")
    return int(raw)


def redact_url(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query) replaced by ``***``,
    safe to log. A URL that does not parse is not echoed at all.

    The user part ends at the last ``@``, not where ``urlsplit`` ends the host: a password with
    an unencoded ``/``, ``?`` or ``#`` (a common mistake, the one these error messages report)
    would otherwise be read as part of the path, query or fragment and shown."""
    try:
        urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, tail = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{tail}"
    return f"{scheme}://" + _PASSWORD_QUERY.sub(r"\1***", rest)


# What urlsplit strips from the ends (C0 controls, space) or drops anywhere (tab, CR, LF), and
# the other controls: no URL means them.
_DROPPED = re.compile(r"^ | $|[\x00-\x1f\x7f]")
_PASSWORD_QUERY = re.compile(r"([?&](?:sentinel_)?password=)[^&#]*", re.IGNORECASE)
