"""Migrated, empty ledgers for tests, on SQLite and on the session's private PostgreSQL.

Each backend is migrated once per session: SQLite into a template file every test copies, PostgreSQL
into one database whose tables are truncated before each test (40 ms; a CREATE DATABASE takes 400).
The fixtures `database_url` and `database` (tests/conftest.py) are parametrised over both."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.postgres_server import PostgresServer

BACKENDS = ["sqlite", "postgresql"]
POSTGRES_LEDGER = "ledger_tests"


def migrate_sqlite_template(directory: Path) -> Path:
    from methtrader.store import Database

    path = directory / "ledger.db"
    with Database.from_url(f"sqlite:///{path}") as db:
        db.upgrade()
    return path


def migrate_postgres_ledger(server: PostgresServer) -> str:
    from methtrader.store import Database

    server.drop_database(POSTGRES_LEDGER)
    with Database.from_url(server.create_database(POSTGRES_LEDGER)) as db:
        db.upgrade()
    return server.url(POSTGRES_LEDGER)


def fresh_sqlite(template: Path, directory: Path) -> str:
    path = directory / "ledger.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def emptied_postgres(server: PostgresServer, url: str) -> str:
    from methtrader.store import Database
    from methtrader.store.schema import metadata

    server.start()  # a test may have stopped it
    with Database.from_url(url) as db, db.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(metadata.tables)} RESTART IDENTITY CASCADE")
    return url
