"""A real PostgreSQL server for tests: initdb into a temp dir, listen on 127.0.0.1 only.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user that
Debian's package creates (tools/bootstrap.sh installs it). The data directory lives under /tmp
because that user cannot enter root's home. The server is stopped, and killed by PID if need be,
when the context exits.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass


def _bin_dir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: run tools/bootstrap.sh (Debian package postgresql)")
    return os.path.dirname(candidates[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    database: str
    pid: int

    def url(self, database: str | None = None, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database or self.database}"

    def create_database(self, name: str, template: str = "") -> str:
        """Create a fresh database (a copy of `template` if given) and return its SQLAlchemy URL."""
        import sqlalchemy as sa

        for identifier in (name, template):
            if identifier and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", identifier):
                raise ValueError(f"not a safe database name: {identifier!r}")
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        clause = f' TEMPLATE "{template}"' if template else ""
        with engine.connect() as conn:
            if template:  # a template must have no sessions; pooled clients may still hold some
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :template AND pid <> pg_backend_pid()"
                    ),
                    {"template": template},
                )
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{clause}')
        engine.dispose()
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    workdir = tempfile.mkdtemp(prefix="causeway-pg-", dir="/tmp")
    if as_root:
        pg = pwd.getpwnam("postgres")
        os.chown(workdir, pg.pw_uid, pg.pw_gid)
        prefix = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--init-groups", "--"]
    data = os.path.join(workdir, "data")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [*prefix, f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        env=env,
        cwd=workdir,
    )
    port = _free_port()
    log = open(os.path.join(workdir, "server.log"), "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            *prefix,
            f"{bin_dir}/postgres",
            "-D",
            data,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            workdir,
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
                capture_output=True,
                env=env,
            )
            if ready.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "PostgreSQL did not start:\n" + open(os.path.join(workdir, "server.log")).read()  # noqa: SIM115
                )
            time.sleep(0.1)
        yield PostgresServer("127.0.0.1", port, "postgres", "postgres", proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: does not wait for pooled clients
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
