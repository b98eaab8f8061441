"""Migrations: an empty SQLite or PostgreSQL database migrates to head, and the migrated schema is
exactly the SQLAlchemy metadata (Alembic's autogenerate comparison finds nothing)."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from methtrader.store import Database
from methtrader.store.migrate import head_revision
from methtrader.store.schema import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'dir' / 'ledger.db'}"  # directories are created
    server = request.getfixturevalue("postgres_server")
    server.start()
    return server.create_database()


def test_upgrade_to_head_creates_exactly_the_metadata(empty_url: str) -> None:
    with Database.from_url(empty_url) as db:
        assert db.current_revision() is None
        assert db.upgrade() == head_revision()
        assert db.upgrade() == head_revision()  # idempotent
        with db.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            tables = set(inspect(connection).get_table_names())
        assert set(metadata.tables) <= tables
        assert "alembic_version" in tables


def test_migrations_downgrade_to_base_and_back(empty_url: str) -> None:
    from alembic import command

    from methtrader.store.migrate import alembic_config

    with Database.from_url(empty_url) as db:
        db.upgrade()
        config = alembic_config()
        with db.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert db.current_revision() is None
        with db.connect() as connection:
            assert not set(metadata.tables) & set(inspect(connection).get_table_names())
        assert db.upgrade() == head_revision()
