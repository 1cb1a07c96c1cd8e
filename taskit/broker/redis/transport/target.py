"""Where a Redis URL points and how to open a connection there: address, TLS, login.

``Target.of(url)`` reads ``redis://``, ``rediss://`` and ``unix://`` URLs (already checked by
``taskit._urls``). On ``rediss://`` it builds the TLS context the way redis-py's
``SSLConnection`` does from the same URL options, so a URL means the same on either transport:
``ssl_cert_reqs`` (none, optional, required; default required), ``ssl_check_hostname`` (default
true; off when ``ssl_cert_reqs=none``), ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_ca_data``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_password``, ``ssl_min_version`` (a
``ssl.TLSVersion`` number), ``ssl_ciphers``, ``ssl_include_verify_flags`` and
``ssl_exclude_verify_flags`` (comma-separated ``ssl.VerifyFlags`` names).

``Fixed`` is the ``Locator`` of one server that is where it is: refusals are raised, never
followed (``locate`` has the ones that look again).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from taskit.broker.redis.errors import Refusal

__all__ = ["Fixed", "Target"]

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_FALSE = ("0", "f", "false", "n", "no")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points, how to log in there, and (``rediss://``) its TLS context."""

    unix: str | None
    host: str
    port: int
    username: str | None
    password: str | None
    db: int
    tls: ssl.SSLContext | None = None
    #: The name the server's certificate must carry (None: not checked).
    server_hostname: str | None = None

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"takes redis://, rediss:// or unix:// URLs, not {parts.scheme}://")
        query = {
            unquote(name): unquote(value)
            for name, sep, value in (p.partition("=") for p in parts.query.split("&"))
            if sep
        }
        password = parts.password or query.get("password")
        path_db = parts.path.strip("/") if parts.scheme != "unix" else ""
        host = parts.hostname or "localhost"
        tls, server_hostname = (None, None)
        if parts.scheme == "rediss":
            tls = _tls_context(query)
            server_hostname = host if tls.check_hostname else None
        return cls(
            unix=parts.path if parts.scheme == "unix" else None,
            host=host,
            port=parts.port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(password) if password else None,
            db=int(query.get("db") or path_db or 0),
            tls=tls,
            server_hostname=server_hostname,
        )

    def where(self) -> str:
        return self.unix or f"{self.host}:{self.port}"

    def at(self, host: str, port: int) -> Target:
        """The same login, database and TLS settings, on another server (a cluster node)."""
        checked = self.tls is not None and self.tls.check_hostname
        return replace(self, unix=None, host=host, port=port,
                       server_hostname=host if checked else None)  # fmt: skip

    def handshake(self, client_name: str) -> list[Sequence[Any]]:
        """The commands that open a connection: AUTH, SELECT, CLIENT SETNAME."""
        commands: list[Sequence[Any]] = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            commands.append(("AUTH", *auth))
        if self.db:
            commands.append(("SELECT", self.db))
        commands.append(("CLIENT", "SETNAME", client_name))
        return commands


class Fixed:
    """The ``Locator`` of one server: always ``target``; a refusal is never followed."""

    def __init__(self, target: Target) -> None:
        self._target = target

    def current(self) -> Target:
        return self._target

    def follows(self, refusal: Refusal) -> bool:
        return False

    def node(self, host: str, port: int) -> Target:
        return self._target.at(host, port)

    def aim(self, key: str) -> None:
        pass

    async def arefresh(self, refusal: Refusal, tried: Target | None) -> Target:
        return self._target

    def refresh(self, refusal: Refusal, tried: Target | None) -> Target:
        return self._target

    def close(self) -> None:
        pass


def _tls_context(options: dict[str, str]) -> ssl.SSLContext:
    """The client TLS context of a ``rediss://`` URL's ``ssl_*`` options (module docstring)."""
    cert_reqs = _CERT_REQS[options.get("ssl_cert_reqs", "required").lower()]
    check = options.get("ssl_check_hostname", "true").lower() not in _FALSE
    context = ssl.create_default_context()
    context.check_hostname = check and cert_reqs != ssl.CERT_NONE
    context.verify_mode = cert_reqs
    for flag in _flags(options.get("ssl_include_verify_flags")):
        context.verify_flags |= flag
    for flag in _flags(options.get("ssl_exclude_verify_flags")):
        context.verify_flags &= ~flag
    certfile, keyfile = options.get("ssl_certfile"), options.get("ssl_keyfile")
    if certfile or keyfile:
        password = options.get("ssl_password")
        context.load_cert_chain(certfile or keyfile or "", keyfile, password)
    ca_certs, ca_path, ca_data = (options.get(f"ssl_ca_{n}") for n in ("certs", "path", "data"))
    if ca_certs or ca_path or ca_data:
        context.load_verify_locations(cafile=ca_certs, capath=ca_path, cadata=ca_data)
    if "ssl_min_version" in options:
        context.minimum_version = ssl.TLSVersion(int(options["ssl_min_version"]))
    if "ssl_ciphers" in options:
        context.set_ciphers(options["ssl_ciphers"])
    return context


def _flags(names: str | None) -> list[ssl.VerifyFlags]:
    """``ssl.VerifyFlags`` from a comma-separated list of names (brackets allowed)."""
    if not names:
        return []
    return [ssl.VerifyFlags[name.strip()] for name in names.strip("[]").split(",") if name.strip()]
