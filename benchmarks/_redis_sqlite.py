"""Redis data types in SQLite, and the Redis broker's Lua scripts run over them with lupa: the
second design of issue 18, measured by ``benchmarks/sqlite_lua_probe.py`` (a probe, not a broker).

Schema: one ``keys`` row per existing key (its type, expiry in ms, element count, the list
position bounds, and a string's value), and one table per container type keyed by (key, element):
``hashes`` (key, field), ``lists`` (key, pos), ``zsets`` (key, member) with an index by (key,
score, member), ``sets`` (key, member). Values and members are BLOBs (binary-safe; SQLite
compares BLOBs with memcmp, as Redis compares members). A key's ``keys`` row is read once per
transaction and kept in memory (``_Meta``), written back at commit when it changed: counts
(``LLEN``, ``ZCARD``) and types (``TYPE``, ``EXISTS``) cost no statement after the first touch,
and a container left empty is deleted, as Redis deletes it. A key past its expiry is deleted
when it is next touched (no active expiry: a key never touched again stays; a sweep over the
``keys_expiry`` index would be a broker's job).

Each script call is one ``BEGIN IMMEDIATE`` transaction (WAL, ``synchronous=NORMAL``): atomic
across processes, like a script in Redis; a script error rolls it back (Redis would keep the
writes made before the error). The scripts run unchanged (the expanded source of
``taskit.broker.redis.scripts.SCRIPTS``) in Lua 5.1 (``lupa.lua51``, Redis's Lua version), with
``redis.call``, ``redis.pcall``, ``redis.error_reply``, ``redis.status_reply`` and ``redis.log``;
no ``cjson``, ``cmsgpack``, ``bit`` or ``struct`` (the scripts use none). Only the commands in
``COMMANDS`` exist, with the argument forms the scripts use; any other is an error naming it.
Arguments and replies follow Redis's Lua conversions (numbers as text, a nil bulk as false, a
status as ``{ok=...}``, an error as ``{err=...}``).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lupa.lua51 as lua51

from taskit.broker.redis.scripts import Script

__all__ = ["COMMANDS", "SCHEMA", "RedisError", "SqliteRedis"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key BLOB PRIMARY KEY, type TEXT NOT NULL, expires INTEGER, size INTEGER NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL, value BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keys_expiry ON keys (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS hashes (
    key BLOB, field BLOB, value BLOB NOT NULL, PRIMARY KEY (key, field)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (
    key BLOB, pos INTEGER, value BLOB NOT NULL, PRIMARY KEY (key, pos)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS zsets (
    key BLOB, member BLOB, score REAL NOT NULL, PRIMARY KEY (key, member)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS zsets_score ON zsets (key, score, member);
CREATE TABLE IF NOT EXISTS sets (key BLOB, member BLOB, PRIMARY KEY (key, member)) WITHOUT ROWID;
"""
_TABLE = {"hash": "hashes", "list": "lists", "zset": "zsets", "set": "sets"}
_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
LOCK_WAIT = 10.0

_GLUE = """
local py_call, py_log = ...
redis = {LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3}
function redis.call(...)
  local r, e = py_call(...)
  if e then error({err = e}) end
  return r
end
function redis.pcall(...)
  local r, e = py_call(...)
  if e then return {err = e} end
  return r
end
function redis.error_reply(e) return {err = e} end
function redis.status_reply(s) return {ok = s} end
function redis.log(level, text) py_log(level, text) end
return function(source)
  local f, why = loadstring(source, '@user_script')
  if not f then error(why) end
  return f
end
"""


class RedisError(Exception):
    """An error reply of a command (as Redis would send it)."""


@dataclass(slots=True)
class _Meta:
    type: str
    expires: int | None
    size: int
    lo: int
    hi: int
    value: bytes | None


def _num(text: bytes) -> float:
    """A score argument as Redis parses it (``inf``, ``-inf``, ``+inf`` included)."""
    low = text.lower()
    if low in (b"inf", b"+inf"):
        return math.inf
    if low == b"-inf":
        return -math.inf
    try:
        value = float(text)
    except ValueError:
        raise RedisError("ERR value is not a valid float") from None
    if math.isnan(value):
        raise RedisError("ERR value is not a valid float")
    return value


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise RedisError("ERR value is not an integer or out of range") from None


def _score_text(score: float) -> bytes:
    """A score as Redis replies it (shortest form; integral ones without a fraction)."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    if score.is_integer() and abs(score) < 1e17:
        return str(int(score)).encode()
    return repr(score).encode()


def _range(text: bytes) -> tuple[float, bool]:
    """A ZRANGEBYSCORE bound: its value and whether it is exclusive."""
    if text.startswith(b"("):
        return _num(text[1:]), True
    return _num(text), False


def _lex(text: bytes) -> tuple[bytes | None, bool, int]:
    """A ZRANGEBYLEX bound: (value, exclusive, infinity: -1 for '-', 1 for '+', else 0)."""
    if text == b"-":
        return None, False, -1
    if text == b"+":
        return None, False, 1
    if text[:1] == b"[":
        return text[1:], False, 0
    if text[:1] == b"(":
        return text[1:], True, 0
    raise RedisError("ERR min or max not valid string range item")


def _arg(value: Any) -> bytes:
    """A Lua argument as Redis turns it into a command argument."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        raise RedisError("ERR Lua redis lib command arguments must be strings or integers")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value)).encode()
        return repr(value).encode()
    raise RedisError("ERR Lua redis lib command arguments must be strings or integers")


class SqliteRedis:
    """One connection: Redis commands over the SQLite schema, and scripts run with lupa, each
    call one transaction. ``statements`` counts SQL statement executions (an ``executemany``
    counts each row), ``commands`` the Redis commands the scripts issued, by name."""

    def __init__(self, path: str, sync: str = "NORMAL") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT * 1000:.0f}")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{path}: journal_mode is {mode!r}, not 'wal'")
        if sync not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {sync!r}")
        self.conn.execute(f"PRAGMA synchronous = {sync}")
        self.statements = 0
        self.commands: Counter[str] = Counter()
        self.trace: list[tuple[tuple[bytes, ...], Any]] | None = None
        self._meta: dict[bytes, _Meta | None] = {}
        self._dirty: set[bytes] = set()
        self._now = 0
        self._lua = lua51.LuaRuntime(encoding=None, unpack_returned_tuples=True,
                                     register_eval=False, register_builtins=False)  # fmt: skip
        self._compile = self._lua.execute(_GLUE, self._call, self._log)
        self._functions: dict[str, Any] = {}
        self._globals = self._lua.globals()
        self._table_from: Callable[..., Any] = self._lua.table_from
        self._dispatch: dict[bytes, Callable[[list[bytes]], Any]] = {
            name.encode(): getattr(self, "c_" + name.lower()) for name in COMMANDS
        }

    def create(self) -> None:
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # -- transactions ----------------------------------------------------------------------
    def _x(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.statements += 1
        return self.conn.execute(sql, params)

    def _many(self, sql: str, rows: list[Sequence[Any]]) -> int:
        self.statements += len(rows)
        return self.conn.executemany(sql, rows).rowcount

    def _begin(self) -> None:
        self._x("BEGIN IMMEDIATE")
        self._now = int(time.time() * 1000)
        self._meta.clear()
        self._dirty.clear()

    def _commit(self) -> None:
        gone, kept = [], []
        for key in self._dirty:
            m = self._meta[key]
            if m is None:
                gone.append((key,))
            else:
                kept.append((key, m.type, m.expires, m.size, m.lo, m.hi, m.value))
        if gone:
            self._many("DELETE FROM keys WHERE key = ?", gone)
        if kept:
            self._many("INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)", kept)
        self._x("COMMIT")

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in one transaction; its reply as redis-py's
        raw reply (bytes, ints, lists, None), or ``RedisError`` for an error reply."""
        f = self._functions.get(script.name)
        if f is None:
            f = self._functions[script.name] = self._compile(script.source)
        g = self._globals
        g.KEYS = self._table_from([k.encode() for k in keys])
        g.ARGV = self._table_from([_arg(a) if not isinstance(a, str) else a.encode()
                                   for a in args])  # fmt: skip
        self._begin()
        try:
            reply = f()
        except BaseException:
            self._x("ROLLBACK")
            raise
        self._commit()
        return self._to_python(reply)

    def execute(self, *args: Any) -> Any:
        """One command in a transaction of its own (the self-check's replay); its raw reply."""
        self._begin()
        try:
            reply = self._run([_arg(a) if not isinstance(a, str) else a.encode() for a in args])
        except BaseException:
            self._x("ROLLBACK")
            raise
        self._commit()
        return reply

    def _to_python(self, reply: Any) -> Any:
        if lupa_typeof(reply) == b"table":
            if reply[b"err"] is not None:
                raise RedisError(reply[b"err"].decode(errors="replace"))
            if reply[b"ok"] is not None:
                return reply[b"ok"]
            out = []
            i = 1
            while (v := reply[i]) is not None:
                out.append(self._to_python(v))
                i += 1
            return out
        if reply is False or reply is None:
            return None
        if reply is True:
            return 1
        if isinstance(reply, float):
            return int(reply)
        return reply

    # -- the command layer -----------------------------------------------------------------
    def _log(self, level: Any, text: Any) -> None:
        pass  # bury's warnings: never on the measured path

    def _call(self, *args: Any) -> tuple[Any, Any]:
        try:
            argv = [_arg(a) for a in args]
            if not argv:
                raise RedisError("ERR Please specify at least one argument for this redis lib call")
            return self._to_lua(self._run(argv)), None
        except RedisError as exc:
            return None, str(exc).encode()

    def _run(self, argv: list[bytes]) -> Any:
        name = argv[0].upper()
        command = self._dispatch.get(name)
        if command is None:
            raise RedisError(f"ERR unknown command '{name.decode()}' (not emulated)")
        self.commands[name.decode()] += 1
        try:
            reply = command(argv[1:])
        except RedisError as exc:
            reply = exc
        if self.trace is not None:
            self.trace.append((tuple(argv), reply))
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _to_lua(self, reply: Any) -> Any:
        if reply is None:
            return False
        if isinstance(reply, list):
            return self._table_from(reply)
        if isinstance(reply, _Status):
            return self._table_from({b"ok": reply.text})
        return reply

    def _get(self, key: bytes, want: str | None = None) -> _Meta | None:
        """The key's meta (None: no such key), its type checked against ``want``."""
        try:
            m = self._meta[key]
        except KeyError:
            row = self._x("SELECT type, expires, size, lo, hi, value FROM keys WHERE key = ?",
                          (key,)).fetchone()  # fmt: skip
            m = None if row is None else _Meta(*row)
            if m is not None and m.expires is not None and m.expires <= self._now:
                if m.type in _TABLE:
                    self._x(f"DELETE FROM {_TABLE[m.type]} WHERE key = ?", (key,))
                m = None
                self._dirty.add(key)
            self._meta[key] = m
        if m is not None and want is not None and m.type != want:
            raise RedisError(_WRONGTYPE)
        return m

    def _make(self, key: bytes, kind: str, value: bytes | None = None) -> _Meta:
        m = self._meta[key] = _Meta(kind, None, 0, 0, 0, value)
        self._dirty.add(key)
        return m

    def _grow(self, key: bytes, m: _Meta, n: int) -> None:
        if n:
            m.size += n
            self._dirty.add(key)
            if m.size <= 0:
                self._meta[key] = None

    def _delete(self, key: bytes) -> bool:
        m = self._get(key)
        if m is None:
            return False
        if m.type in _TABLE:
            self._x(f"DELETE FROM {_TABLE[m.type]} WHERE key = ?", (key,))
        self._meta[key] = None
        self._dirty.add(key)
        return True

    # generic
    def c_time(self, a: list[bytes]) -> Any:
        now = time.time()
        return [str(int(now)).encode(), str(int(now * 1e6) % 1_000_000).encode()]

    def c_del(self, a: list[bytes]) -> Any:
        return sum(self._delete(k) for k in a)

    def c_exists(self, a: list[bytes]) -> Any:
        return sum(self._get(k) is not None for k in a)

    def c_type(self, a: list[bytes]) -> Any:
        m = self._get(a[0])
        return _Status(b"none" if m is None else m.type.encode())

    def c_pexpire(self, a: list[bytes]) -> Any:
        m = self._get(a[0])
        if m is None:
            return 0
        ms = _int(a[1])
        if ms <= 0:
            self._delete(a[0])
        else:
            m.expires = self._now + ms
            self._dirty.add(a[0])
        return 1

    def c_expire(self, a: list[bytes]) -> Any:
        return self.c_pexpire([a[0], str(_int(a[1]) * 1000).encode()])

    def c_persist(self, a: list[bytes]) -> Any:
        m = self._get(a[0])
        if m is None or m.expires is None:
            return 0
        m.expires = None
        self._dirty.add(a[0])
        return 1

    # strings
    def c_get(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "string")
        return None if m is None else m.value

    def c_set(self, a: list[bytes]) -> Any:
        if len(a) not in (2, 4) or (len(a) == 4 and a[2].upper() != b"PX"):
            raise RedisError("ERR SET form not emulated")
        self._delete(a[0])
        m = self._make(a[0], "string", a[1])
        if len(a) == 4:
            m.expires = self._now + _int(a[3])
        return _Status(b"OK")

    def c_incr(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "string")
        n = (_int(m.value or b"") if m is not None else 0) + 1
        if m is None:
            m = self._make(a[0], "string")
        m.value = str(n).encode()
        self._dirty.add(a[0])
        return n

    # hashes
    def c_hget(self, a: list[bytes]) -> Any:
        if self._get(a[0], "hash") is None:
            return None
        row = self._x("SELECT value FROM hashes WHERE key = ? AND field = ?", a[:2]).fetchone()
        return None if row is None else row[0]

    def c_hexists(self, a: list[bytes]) -> Any:
        return 0 if self.c_hget(a) is None else 1

    def c_hmget(self, a: list[bytes]) -> Any:
        return [self.c_hget([a[0], f]) for f in a[1:]]

    def c_hgetall(self, a: list[bytes]) -> Any:
        if self._get(a[0], "hash") is None:
            return []
        out: list[bytes] = []
        for f, v in self._x("SELECT field, value FROM hashes WHERE key = ?", (a[0],)):
            out += [f, v]
        return out

    def c_hset(self, a: list[bytes]) -> Any:
        if len(a) < 3 or len(a) % 2 != 1:
            raise RedisError("ERR wrong number of arguments for 'hset' command")
        key = a[0]
        m = self._get(key, "hash") or self._make(key, "hash")
        pairs = dict(zip(a[1::2], a[2::2], strict=True))
        rows = [(key, f, v) for f, v in pairs.items()]
        if len(rows) == 1:
            added = self._x("INSERT OR IGNORE INTO hashes VALUES (?, ?, ?)", rows[0]).rowcount
        else:
            added = self._many("INSERT OR IGNORE INTO hashes VALUES (?, ?, ?)", rows)
        if added < len(rows):
            update = [(v, k, f) for k, f, v in rows]
            if len(update) == 1:
                self._x("UPDATE hashes SET value = ? WHERE key = ? AND field = ?", update[0])
            else:
                self._many("UPDATE hashes SET value = ? WHERE key = ? AND field = ?", update)
        self._grow(key, m, added)
        return added

    def c_hsetnx(self, a: list[bytes]) -> Any:
        if self.c_hget(a[:2]) is not None:
            return 0
        return self.c_hset(a)

    def c_hdel(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "hash")
        if m is None:
            return 0
        gone = 0
        for f in dict.fromkeys(a[1:]):
            gone += self._x("DELETE FROM hashes WHERE key = ? AND field = ?", (a[0], f)).rowcount
        self._grow(a[0], m, -gone)
        return gone

    def c_hincrby(self, a: list[bytes]) -> Any:
        old = self.c_hget(a[:2])
        try:
            n = (0 if old is None else int(old)) + int(a[2])
        except ValueError:
            raise RedisError("ERR hash value is not an integer") from None
        self.c_hset([a[0], a[1], str(n).encode()])
        return n

    # lists
    def c_llen(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "list")
        return 0 if m is None else m.size

    def _push(self, a: list[bytes], left: bool) -> int:
        key = a[0]
        m = self._get(key, "list") or self._make(key, "list")
        rows = []
        for v in a[1:]:
            if left:
                m.lo -= 1
                rows.append((key, m.lo, v))
            else:
                rows.append((key, m.hi, v))
                m.hi += 1
        if len(rows) == 1:
            self._x("INSERT INTO lists VALUES (?, ?, ?)", rows[0])
        else:
            self._many("INSERT INTO lists VALUES (?, ?, ?)", rows)
        self._grow(key, m, len(rows))
        return m.size

    def c_lpush(self, a: list[bytes]) -> Any:
        return self._push(a, True)

    def c_rpush(self, a: list[bytes]) -> Any:
        return self._push(a, False)

    def _pop(self, key: bytes, left: bool) -> bytes | None:
        m = self._get(key, "list")
        if m is None:
            return None
        end = "min" if left else "max"
        row = self._x(f"DELETE FROM lists WHERE key = ? AND pos = (SELECT {end}(pos) FROM lists "
                      "WHERE key = ?) RETURNING value", (key, key)).fetchone()  # fmt: skip
        self._grow(key, m, -1)
        return None if row is None else row[0]

    def c_lpop(self, a: list[bytes]) -> Any:
        return self._pop(a[0], True)

    def c_rpoplpush(self, a: list[bytes]) -> Any:
        self._get(a[1], "list")
        v = self._pop(a[0], False)
        if v is not None:
            self._push([a[1], v], True)
        return v

    def _span(self, m: _Meta | None, start: int, stop: int) -> tuple[int, int]:
        """Redis's index normalization: (offset, count), count 0 for an empty range."""
        size = 0 if m is None else m.size
        if start < 0:
            start = max(size + start, 0)
        if stop < 0:
            stop = size + stop
        stop = min(stop, size - 1)
        return start, max(stop - start + 1, 0)

    def c_lrange(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "list")
        off, n = self._span(m, _int(a[1]), _int(a[2]))
        if n == 0:
            return []
        rows = self._x("SELECT value FROM lists WHERE key = ? ORDER BY pos LIMIT ? OFFSET ?",
                       (a[0], n, off))  # fmt: skip
        return [r[0] for r in rows]

    def c_lindex(self, a: list[bytes]) -> Any:
        got = self.c_lrange([a[0], a[1], a[1]])
        return got[0] if got else None

    def c_ltrim(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "list")
        if m is None:
            return _Status(b"OK")
        off, n = self._span(m, _int(a[1]), _int(a[2]))
        if n == 0:
            self._delete(a[0])
            return _Status(b"OK")
        gone = 0
        if off > 0:
            gone += self._x(
                "DELETE FROM lists WHERE key = ? AND pos IN (SELECT pos FROM lists "
                "WHERE key = ? ORDER BY pos LIMIT ?)",
                (a[0], a[0], off),
            ).rowcount
        tail = m.size - off - n
        if tail > 0:
            gone += self._x("DELETE FROM lists WHERE key = ? AND pos IN (SELECT pos FROM lists "
                            "WHERE key = ? ORDER BY pos DESC LIMIT ?)", (a[0], a[0], tail)
                            ).rowcount  # fmt: skip
        self._grow(a[0], m, -gone)
        return _Status(b"OK")

    def c_lrem(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "list")
        if m is None:
            return 0
        count = _int(a[1])
        order = "DESC" if count < 0 else ""
        limit = abs(count) if count else -1
        gone = self._x(f"DELETE FROM lists WHERE key = ? AND pos IN (SELECT pos FROM lists WHERE "
                       f"key = ? AND value = ? ORDER BY pos {order} LIMIT ?)",
                       (a[0], a[0], a[2], limit)).rowcount  # fmt: skip
        self._grow(a[0], m, -gone)
        return gone

    def c_lpos(self, a: list[bytes]) -> Any:
        if len(a) != 2:
            raise RedisError("ERR LPOS options not emulated")
        if self._get(a[0], "list") is None:
            return None
        row = self._x("SELECT (SELECT count(*) FROM lists WHERE key = ?1 AND pos < p.pos) FROM "
                      "(SELECT min(pos) AS pos FROM lists WHERE key = ?1 AND value = ?2) AS p "
                      "WHERE p.pos IS NOT NULL", (a[0], a[1])).fetchone()  # fmt: skip
        return None if row is None else row[0]

    # sets
    def c_sadd(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "set") or self._make(a[0], "set")
        added = self._many("INSERT OR IGNORE INTO sets VALUES (?, ?)", [(a[0], v) for v in a[1:]])
        self._grow(a[0], m, added)
        return added

    def c_srem(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "set")
        if m is None:
            return 0
        gone = self._many("DELETE FROM sets WHERE key = ? AND member = ?",
                          [(a[0], v) for v in dict.fromkeys(a[1:])])  # fmt: skip
        self._grow(a[0], m, -gone)
        return gone

    def c_smembers(self, a: list[bytes]) -> Any:
        if self._get(a[0], "set") is None:
            return []
        return [r[0] for r in self._x("SELECT member FROM sets WHERE key = ?", (a[0],))]

    # sorted sets
    def c_zadd(self, a: list[bytes]) -> Any:
        if len(a) < 3 or len(a) % 2 != 1:
            raise RedisError("ERR ZADD form not emulated")
        key = a[0]
        pairs = {member: _num(score) for score, member in zip(a[1::2], a[2::2], strict=True)}
        m = self._get(key, "zset") or self._make(key, "zset")
        added = 0
        for member, score in pairs.items():
            if self._x("INSERT OR IGNORE INTO zsets VALUES (?, ?, ?)", (key, member, score)
                       ).rowcount:  # fmt: skip
                added += 1
            else:
                self._x("UPDATE zsets SET score = ? WHERE key = ? AND member = ?",
                        (score, key, member))  # fmt: skip
        self._grow(key, m, added)
        return added

    def c_zrem(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "zset")
        if m is None:
            return 0
        rows = [(a[0], v) for v in dict.fromkeys(a[1:])]
        if len(rows) == 1:
            gone = self._x("DELETE FROM zsets WHERE key = ? AND member = ?", rows[0]).rowcount
        else:
            gone = self._many("DELETE FROM zsets WHERE key = ? AND member = ?", rows)
        self._grow(a[0], m, -gone)
        return gone

    def c_zscore(self, a: list[bytes]) -> Any:
        if self._get(a[0], "zset") is None:
            return None
        row = self._x("SELECT score FROM zsets WHERE key = ? AND member = ?", a[:2]).fetchone()
        return None if row is None else _score_text(row[0])

    def c_zcard(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "zset")
        return 0 if m is None else m.size

    def c_zrank(self, a: list[bytes]) -> Any:
        if self._get(a[0], "zset") is None:
            return None
        row = self._x("SELECT (SELECT count(*) FROM zsets WHERE key = ?1 AND (score < z.score OR "
                      "(score = z.score AND member < z.member))) FROM zsets AS z WHERE key = ?1 "
                      "AND member = ?2", (a[0], a[1])).fetchone()  # fmt: skip
        return None if row is None else row[0]

    def _with(self, rows: Any, scores: bool) -> list[bytes]:
        out: list[bytes] = []
        for member, score in rows:
            out.append(member)
            if scores:
                out.append(_score_text(score))
        return out

    def c_zrange(self, a: list[bytes]) -> Any:
        extra = [x.upper() for x in a[3:]]
        if extra not in ([], [b"WITHSCORES"]):
            raise RedisError("ERR ZRANGE form not emulated")
        m = self._get(a[0], "zset")
        off, n = self._span(m, _int(a[1]), _int(a[2]))
        if n == 0:
            return []
        rows = self._x("SELECT member, score FROM zsets WHERE key = ? ORDER BY score, member "
                       "LIMIT ? OFFSET ?", (a[0], n, off))  # fmt: skip
        return self._with(rows, bool(extra))

    def _score_where(self, low: bytes, high: bytes) -> tuple[str, list[Any]]:
        lo, lo_x = _range(low)
        hi, hi_x = _range(high)
        return (f"score {'>' if lo_x else '>='} ? AND score {'<' if hi_x else '<='} ?", [lo, hi])

    def _limit(self, extra: list[bytes]) -> tuple[bool, int, int]:
        scores, off, n = False, 0, -1
        i = 0
        while i < len(extra):
            word = extra[i].upper()
            if word == b"WITHSCORES":
                scores, i = True, i + 1
            elif word == b"LIMIT" and i + 2 < len(extra):
                off, n, i = _int(extra[i + 1]), _int(extra[i + 2]), i + 3
            else:
                raise RedisError("ERR syntax error")
        if n < 0:
            n = -1
        return scores, off, n

    def c_zrangebyscore(self, a: list[bytes]) -> Any:
        if self._get(a[0], "zset") is None:
            return []
        where, params = self._score_where(a[1], a[2])
        scores, off, n = self._limit(a[3:])
        if off < 0:
            return []
        sql = f"SELECT member, score FROM zsets WHERE key = ? AND {where} ORDER BY score, member"
        rows = self._x(sql + " LIMIT ? OFFSET ?", (a[0], *params, n, off))
        return self._with(rows, scores)

    def c_zcount(self, a: list[bytes]) -> Any:
        if self._get(a[0], "zset") is None:
            return 0
        where, params = self._score_where(a[1], a[2])
        return self._x(f"SELECT count(*) FROM zsets WHERE key = ? AND {where}",
                       (a[0], *params)).fetchone()[0]  # fmt: skip

    def c_zremrangebyscore(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "zset")
        if m is None:
            return 0
        where, params = self._score_where(a[1], a[2])
        gone = self._x(f"DELETE FROM zsets WHERE key = ? AND {where}", (a[0], *params)).rowcount
        self._grow(a[0], m, -gone)
        return gone

    def c_zremrangebyrank(self, a: list[bytes]) -> Any:
        m = self._get(a[0], "zset")
        off, n = self._span(m, _int(a[1]), _int(a[2]))
        if m is None or n == 0:
            return 0
        gone = self._x("DELETE FROM zsets WHERE key = ? AND member IN (SELECT member FROM zsets "
                       "WHERE key = ? ORDER BY score, member LIMIT ? OFFSET ?)",
                       (a[0], a[0], n, off)).rowcount  # fmt: skip
        self._grow(a[0], m, -gone)
        return gone

    def _lex_where(self, low: bytes, high: bytes) -> tuple[str, list[Any]] | None:
        lo, lo_x, lo_inf = _lex(low)
        hi, hi_x, hi_inf = _lex(high)
        parts, params = [], []
        if lo_inf == 1 or hi_inf == -1:
            return None
        if lo_inf == 0:
            parts.append(f"member {'>' if lo_x else '>='} ?")
            params.append(lo)
        if hi_inf == 0:
            parts.append(f"member {'<' if hi_x else '<='} ?")
            params.append(hi)
        return " AND ".join(["1", *parts]), params

    def c_zrangebylex(self, a: list[bytes]) -> Any:
        if self._get(a[0], "zset") is None:
            return []
        found = self._lex_where(a[1], a[2])
        scores, off, n = self._limit(a[3:])
        if found is None or scores or off < 0:
            return []
        where, params = found
        rows = self._x(f"SELECT member FROM zsets WHERE key = ? AND {where} ORDER BY member "
                       "LIMIT ? OFFSET ?", (a[0], *params, n, off))  # fmt: skip
        return [r[0] for r in rows]

    def c_zlexcount(self, a: list[bytes]) -> Any:
        if self._get(a[0], "zset") is None:
            return 0
        found = self._lex_where(a[1], a[2])
        if found is None:
            return 0
        where, params = found
        return self._x(f"SELECT count(*) FROM zsets WHERE key = ? AND {where}",
                       (a[0], *params)).fetchone()[0]  # fmt: skip

    # counting, for the probe's checks
    def hlen(self, key: str) -> int:
        row = self.conn.execute("SELECT size FROM keys WHERE key = ?", (key.encode(),)).fetchone()
        return 0 if row is None else int(row[0])


@dataclass(frozen=True, slots=True)
class _Status:
    text: bytes


def lupa_typeof(value: Any) -> bytes:
    return (lua51.lua_type(value) or "").encode()


#: The commands emulated (each a ``c_<name>`` method of ``SqliteRedis``).
COMMANDS = (
    "TIME", "DEL", "EXISTS", "TYPE", "PEXPIRE", "EXPIRE", "PERSIST",
    "GET", "SET", "INCR",
    "HGET", "HEXISTS", "HMGET", "HGETALL", "HSET", "HSETNX", "HDEL", "HINCRBY",
    "LLEN", "LPUSH", "RPUSH", "LPOP", "RPOPLPUSH", "LRANGE", "LINDEX", "LTRIM", "LREM", "LPOS",
    "SADD", "SREM", "SMEMBERS",
    "ZADD", "ZREM", "ZSCORE", "ZCARD", "ZRANK", "ZRANGE", "ZRANGEBYSCORE", "ZCOUNT",
    "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZRANGEBYLEX", "ZLEXCOUNT",
)  # fmt: skip
