"""The durable ledger: SQLAlchemy tables, the database handle, migrations and idempotent writes."""

from methtrader.store.database import DEFAULT_URL, ENV_URL, Database, DatabaseError, resolve_url

__all__ = ["DEFAULT_URL", "ENV_URL", "Database", "DatabaseError", "resolve_url"]
