"""Alembic migrations shipped in the package, run without an alembic.ini.

upgrade(db)             # to head; returns the revision
current_revision(db)    # None for an empty database
head_revision()
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from methtrader.store.database import Database, DatabaseError, describe

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def upgrade(db: Database, revision: str = "head") -> str | None:
    """Migrate `db` to `revision` in one transaction; the revision it is at afterwards."""
    config = alembic_config()
    try:
        with db.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return current_revision(db)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate {db.url}: {describe(exc)}") from None


def current_revision(db: Database) -> str | None:
    """The revision stamped in the database (None when it was never migrated)."""
    try:
        with db.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot reach the database {db.url}: {describe(exc)}") from None
