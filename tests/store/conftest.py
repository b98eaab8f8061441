"""`database`: a migrated, empty ledger on SQLite and on the session's private PostgreSQL.

Each backend is migrated once per session: SQLite into a template file every test copies, PostgreSQL
into one database whose tables are truncated before each test (40 ms, a CREATE DATABASE takes 400)."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from methtrader.store import Database
from methtrader.store.schema import metadata
from support.postgres_server import PostgresServer

BACKENDS = ["sqlite", "postgresql"]
LEDGER = "ledger_tests"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger-template") / "ledger.db"
    with Database.from_url(f"sqlite:///{path}") as db:
        db.upgrade()
    return path


@pytest.fixture(scope="session")
def postgres_ledger(postgres_server: PostgresServer) -> str:
    postgres_server.drop_database(LEDGER)
    with Database.from_url(postgres_server.create_database(LEDGER)) as db:
        db.upgrade()
    return postgres_server.url(LEDGER)


def fresh_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of `backend` for one test."""
    if backend == "sqlite":
        path = tmp_path / "ledger.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = request.getfixturevalue("postgres_ledger")
    server.start()  # a test may have stopped it
    with Database.from_url(url) as db, db.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(metadata.tables)} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_url(request.param, request, tmp_path)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated, empty ledger; parametrised over SQLite and PostgreSQL."""
    db = Database.from_url(database_url)
    try:
        yield db
    finally:
        db.close()
