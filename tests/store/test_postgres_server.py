"""The tests' private PostgreSQL: stops and starts mid-session keeping its data and port, and a
machine without PostgreSQL fails with an install hint instead of skipping."""

import pytest
from sqlalchemy import text

from methtrader.store import Database, DatabaseError
from support import postgres_server
from support.postgres_server import PostgresServer


def test_stop_and_start_keep_port_and_data(postgres_server: PostgresServer) -> None:
    postgres_server.start()
    url = postgres_server.create_database()
    with Database.from_url(url) as db:
        with db.begin() as conn:
            conn.execute(text("CREATE TABLE kept (n INTEGER)"))
            conn.execute(text("INSERT INTO kept VALUES (42)"))
        port = postgres_server.port
        postgres_server.stop()
        assert not postgres_server.running and not postgres_server.ping()
        with pytest.raises(DatabaseError, match="cannot reach the database"):
            db.ping()
        postgres_server.start()
        assert postgres_server.port == port
        with db.connect() as conn:
            assert conn.execute(text("SELECT n FROM kept")).scalar_one() == 42


def test_missing_binaries_fail_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_server, "postgres_bindir", lambda: None)
    with pytest.raises(RuntimeError, match=r"install the Debian package `postgresql`"):
        PostgresServer()


def test_never_the_shared_port() -> None:
    with pytest.raises(ValueError, match="5432"):
        PostgresServer(port=5432)
