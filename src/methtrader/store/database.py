"""`Database`: one engine for the ledger, SQLite under `var/` by default, PostgreSQL by configuration.

    db = Database.from_url()                  # METHTRADER_DATABASE_URL, else sqlite:///var/methtrader.db
    db = Database.from_url("postgresql+psycopg://trader@db/ledger")
    db.upgrade()                              # Alembic migrations to head
    with db.begin() as conn:                  # one transaction
        ledger.insert_order(conn, ...)

SQLite runs in WAL mode with foreign keys on, and every transaction starts with BEGIN IMMEDIATE so
two processes writing the same file queue on the write lock instead of failing half-way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from methtrader.store.types import canonical_json

ENV_URL = "METHTRADER_DATABASE_URL"
DEFAULT_URL = "sqlite:///var/methtrader.db"
CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_S = 30.0


class DatabaseError(Exception):
    """The database cannot be used: a bad URL, a missing driver, or no answer. One line, no secrets."""


def resolve_url(url: str | None = None) -> URL:
    """The URL to use: `url`, else METHTRADER_DATABASE_URL, else the SQLite default.

    `postgresql://` and `postgres://` mean psycopg 3 (the driver this project ships)."""
    raw = (url if url is not None else os.environ.get(ENV_URL, "")).strip() or DEFAULT_URL
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw.removeprefix("postgres://")
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseError(
            "not a database URL (expected sqlite:///PATH or postgresql+psycopg://...)"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")
    return parsed


def describe(exc: BaseException) -> str:
    """One line for a database exception: the driver's first line, never the SQL or parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        message = str(exc.orig)
    else:
        message = str(exc)
    first = next((line.strip() for line in message.splitlines() if line.strip()), type(exc).__name__)
    return first.removeprefix("(psycopg.OperationalError) ")


class Database:
    """An SQLAlchemy engine for the ledger plus what the CLI and the tests need around it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(
        cls, url: str | None = None, *, echo: bool = False, background_checkpoints: bool = False
    ) -> Database:
        """Open (lazily) the database at `url` (see `resolve_url`); creates a SQLite file's directory.

        `background_checkpoints`: SQLite never checkpoints inside a commit (where it would stall a
        write-ahead on an fsync); the owner calls `checkpoint("PASSIVE")` off the hot path instead."""
        parsed = resolve_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": canonical_json}
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                try:
                    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise DatabaseError(
                        f"cannot create the directory of {database} ({exc.strerror})"
                    ) from None
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        try:
            engine = create_engine(parsed, **kwargs)
        except NoSuchModuleError:
            raise DatabaseError(f"no driver for {parsed.drivername!r} (use postgresql+psycopg)") from None
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(f"cannot open the database: {describe(exc)}") from None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, autocheckpoint=not background_checkpoints)
        return cls(engine)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The URL with any password replaced by ***, safe for messages and logs."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end of the block, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    def ping(self) -> None:
        """Raise DatabaseError (one line) unless the database answers SELECT 1."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot reach the database {self.url}: {describe(exc)}") from None

    def upgrade(self, revision: str = "head") -> str | None:
        """Migrate to `revision` (Alembic); the revision the database is at afterwards."""
        from methtrader.store.migrate import upgrade

        return upgrade(self, revision)

    def current_revision(self) -> str | None:
        from methtrader.store.migrate import current_revision

        return current_revision(self)

    def checkpoint(self, mode: str = "TRUNCATE") -> None:
        """SQLite: move the write-ahead log into the database file; TRUNCATE also empties it, so the
        file alone holds every commit (a copy, a backup or `sqlite3` on it sees them all), PASSIVE
        copies what it can without waiting for anyone. No-op elsewhere."""
        if self.dialect != "sqlite" or self.engine.url.database in (None, "", ":memory:"):
            return
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                busy = cursor.execute(f"PRAGMA wal_checkpoint({CHECKPOINT_MODES[mode]})").fetchone()[0]
                cursor.close()
            finally:
                raw.close()
        except (SQLAlchemyError, dbapi_error) as exc:
            raise DatabaseError(f"cannot checkpoint {self.url}: {describe(exc)}") from None
        if busy and mode != "PASSIVE":
            raise DatabaseError(f"cannot checkpoint {self.url}: another connection is reading or writing")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"


CHECKPOINT_MODES = {"PASSIVE": "PASSIVE", "TRUNCATE": "TRUNCATE"}


def _configure_sqlite(engine: Engine, autocheckpoint: bool = True) -> None:
    """pysqlite's own transaction handling off; we emit BEGIN IMMEDIATE ourselves (SQLAlchemy's recipe)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives the process dying at any point (what the crash
                # tests check) without an fsync per commit; only a power cut may lose the last ones
                cursor.execute("PRAGMA synchronous=NORMAL")
                if not autocheckpoint:
                    cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
