"""A ``redis-server`` with only a TLS port, on loopback, its certificates made at test time.

``tls_redis(directory)`` makes a CA, a server certificate for 127.0.0.1 and a client certificate
with the ``openssl`` CLI, starts ``redis-server --tls-port`` and yields a ``TlsRedis``. With
``auth_clients`` the server demands a client certificate. A missing ``openssl`` or
``redis-server``, or one built without TLS, fails the test under ``CI=true`` and skips it
elsewhere (``tests._ci``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests._ci import missing
from tests.e2e.helpers import free_port

__all__ = ["TlsRedis", "tls_redis"]


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca: Path
    client_cert: Path
    client_key: Path

    def url(self, query: str = "") -> str:
        """A ``rediss://`` URL to db 0 trusting the test CA, with ``query`` options added."""
        options = f"ssl_ca_certs={self.ca}" + (f"&{query}" if query else "")
        return f"rediss://127.0.0.1:{self.port}/0?{options}"


def _certificates(directory: Path) -> tuple[Path, Path, Path, Path, Path]:
    """(CA, server cert, server key, client cert, client key), made with ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl is needed to make the TLS tests' certificates")
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    run = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run([*run, "-keyout", ca_key, "-out", ca, "-subj", "/CN=taskit test CA"],
                   check=True, capture_output=True)  # fmt: skip
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    made = []
    for who in ("server", "client"):
        key, csr, cert = (directory / f"{who}.{n}" for n in ("key", "csr", "crt"))
        subprocess.run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                        csr, "-subj", f"/CN={who}"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                        "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
                       check=True, capture_output=True)  # fmt: skip
        made += [cert, key]
    return ca, made[0], made[1], made[2], made[3]


@contextmanager
def tls_redis(directory: Path, *, auth_clients: bool = False) -> Iterator[TlsRedis]:
    """A TLS-only ``redis-server`` for the duration of the block (see the module docstring)."""
    server = shutil.which("redis-server")
    if server is None:
        missing("redis-server is not on PATH")
    ca, cert, key, client_cert, client_key = _certificates(directory)
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "yes" if auth_clients else "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca),
                             ssl_certfile=str(client_cert),
                             ssl_keyfile=str(client_key))  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                missing(f"redis-server --tls-port does not run (built without TLS?): {err}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError("the TLS redis-server did not answer") from None
                time.sleep(0.05)
        client.close()
        yield TlsRedis(port, ca, client_cert, client_key)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
