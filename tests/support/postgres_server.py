"""A private, throw-away PostgreSQL for tests: local binaries, a free port, never port 5432.

    server = PostgresServer()          # fails (never skips) when PostgreSQL is not installed
    server.start()
    url = server.create_database()     # postgresql+psycopg://postgres@127.0.0.1:PORT/t_1
    server.stop()                      # chaos: the server goes away ...
    server.start()                     # ... and comes back with its data, on the same port
    server.close()                     # stop and remove the data directory

initdb refuses to run as root, and tests run as root in sessions and CI: then initdb and the server
run as the `postgres` system user (`runuser -u postgres --`) in a temporary directory that user
owns. The server listens on 127.0.0.1 only, its unix socket in that directory, with fsync off.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from support.redis_server import _die_with_parent, free_port

FORBIDDEN_PORT = 5432
BINARY_GLOB = "/usr/lib/postgresql/*/bin"
MISSING = (
    "PostgreSQL is not installed: no initdb/postgres on PATH or under /usr/lib/postgresql/*/bin "
    "(install the Debian package `postgresql`; .ci/run does)"
)


def postgres_bindir() -> Path | None:
    """The directory holding initdb and postgres: PATH first, then the newest Debian version."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    candidates = [Path(d) for d in glob.glob(BINARY_GLOB) if (Path(d) / "initdb").exists()]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())

    candidates = [d for d in candidates if (d / "postgres").exists()]
    return max(candidates, key=version) if candidates else None


class PostgresServer:
    """One private PostgreSQL cluster. ``start()``/``stop()`` may be called repeatedly; the port stays."""

    def __init__(self, port: int | None = None, *, startup_timeout: float = 30.0) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError(MISSING)
        if port == FORBIDDEN_PORT:
            raise ValueError("tests must never use the shared PostgreSQL port 5432")
        self.bindir = bindir
        self.port = port if port is not None else _free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="methtrader-postgres-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "socket"
        self.logfile = self.dir / "postgres.log"
        self._run_as: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._initialised = False

    # --- lifecycle ----------------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> PostgresServer:
        if self.running:
            return self
        if not self._initialised:
            self._initdb()
        args = [
            str(self.bindir / "postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", f"listen_addresses={self.host}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=100",
            "-c", "shared_buffers=32MB",
        ]  # fmt: skip
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                [*self._run_as, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,  # runuser gets SIGTERM with us and passes it on
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self.ping():
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres on port {self.port} exited at start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(
                    f"postgres on port {self.port} did not accept connections within "
                    f"{self.startup_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=1
            ):
                return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), falling back to SIGKILL."""
        self._signal_postmaster(signal.SIGINT)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None

    def kill(self) -> None:
        """Chaos: SIGKILL the postmaster (clients see a reset; crash recovery on the next start)."""
        self._kill()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- databases ---------------------------------------------------------------------------------
    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """CREATE DATABASE (a fresh name by default, optionally copying `template`); its URL."""
        import psycopg
        from psycopg import sql

        name = name or f"t_{os.getpid()}_{next(self._names)}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, running={self.running})"

    # --- internals ---------------------------------------------------------------------------------
    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as the postgres user
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(f"{MISSING}; running as root needs the `postgres` system user") from None
            for path in (self.dir, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        command = [
            *self._run_as,
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", self.user,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stderr or result.stdout}")
        self._initialised = True

    def _signal_postmaster(self, signum: int) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)

    def _kill(self) -> None:
        """SIGKILL the postmaster and let runuser reap it (so no stale postmaster.pid points at a zombie)."""
        self._signal_postmaster(signal.SIGKILL)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self._proc = None


def _free_port() -> int:
    while True:
        port = free_port()
        if port != FORBIDDEN_PORT:
            return port
