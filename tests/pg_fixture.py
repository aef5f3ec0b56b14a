"""A throw-away PostgreSQL server for the routing-log tests, started once per session on 127.0.0.1.

Finds Debian's binaries (``/usr/lib/postgresql/*/bin``, newest version first; ``PG_BIN`` overrides), makes a cluster
in a temporary directory (trust authentication, socket in that directory, a free TCP port) and stops it at the end.
``initdb`` refuses to run as root, so as root the directory is handed to an unprivileged user (``postgres``, else
``nobody``) and the server runs as that user through ``runuser``. When PostgreSQL or the ``postgres`` extra is
missing, or the cluster cannot start, :func:`start_or_skip` skips the tests that need it, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

SKIP = "PostgreSQL not available: "


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (None when PostgreSQL is not installed)."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()], reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unprivileged_user() -> str | None:
    """The user to run the server as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """A running cluster: ``url(db)`` is a SQLAlchemy URL for a database in it, ``create_database()`` makes one."""

    def __init__(self, bin_dir: Path, folder: Path, user: str | None):
        self.bin_dir = bin_dir
        self.folder = folder
        self.user = user
        self.data = folder / "data"
        self.logfile = folder / "server.log"
        self.port = free_port()

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            log = self.logfile.read_text(errors="replace").strip().splitlines()[-5:] if self.logfile.exists() else []
            raise RuntimeError(f"{Path(args[0]).name} failed: {' | '.join(tail + log)}")

    def start(self) -> None:
        if self.user:
            shutil.chown(self.folder, self.user)
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder}"
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t",
            "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        import psycopg

        name = f"log_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return name

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one statement, on a connection of its own (autocommit)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={database}", autocommit=True) as c:
            cursor = c.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def start_or_skip() -> PostgresServer:
    """A started server (stop it with ``stop()``), or ``pytest.skip`` saying why there is none."""
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"{SKIP}the postgres extra is not installed ({exc}); pip install -e '.[postgres]'")
    bin_dir = find_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip(f"{SKIP}no initdb under /usr/lib/postgresql/*/bin or on PATH (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="hybrid-llm-pg-"))
    try:
        server = PostgresServer(bin_dir, folder, _unprivileged_user())
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"{SKIP}the test cluster could not start ({exc})")
    return server
