"""Alembic environment for the ledger, configured in code by `methtrader.store.migrate` (no alembic.ini).

The caller passes an open connection in `config.attributes["connection"]`; offline mode (SQL scripts)
uses the `sqlalchemy.url` option."""

from alembic import context

from methtrader.store.schema import metadata

config = context.config
options = {"target_metadata": metadata, "compare_type": True, "render_as_batch": True}

if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
