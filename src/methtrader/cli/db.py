"""`methtrader db upgrade|current`: migrate the ledger (SQLite or PostgreSQL) and show its revision."""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from methtrader.cli.errors import OneLineUsageCommand, OneLineUsageGroup, UserError, fail_on_user_error

app = typer.Typer(
    cls=OneLineUsageGroup,
    help="The ledger database: migrations (SQLite under var/ by default, PostgreSQL by URL).",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL (default: METHTRADER_DATABASE_URL, else sqlite:///var/methtrader.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default: $METHTRADER_MLFLOW_TRACKING_URI or sqlite:///var/mlflow.db)."
    ),
]


def open_database(url: str | None):  # type: ignore[no-untyped-def]
    """The Database at `url`, else METHTRADER_DATABASE_URL (with METHTRADER_DATABASE_PASSWORD(_FILE), as
    `methtrader run` reads it), else the SQLite default; the URL is registered as a log secret."""
    from methtrader.cli.run import database_url
    from methtrader.ops.logs import register_secret
    from methtrader.store import Database, DatabaseError, resolve_url

    if url is None:
        url = database_url()
    try:
        register_secret(resolve_url(url).render_as_string(hide_password=False))
        return Database.from_url(url)
    except DatabaseError as exc:
        raise UserError(str(exc)) from None


@app.command(cls=OneLineUsageCommand)
@fail_on_user_error
def upgrade(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Migrate the database to the newest schema (creates it when empty)."""
    from methtrader.store import DatabaseError
    from methtrader.store.migrate import head_revision

    with open_database(url) as db:
        try:
            db.ping()
            before = db.current_revision()
            after = db.upgrade()
        except DatabaseError as exc:
            raise UserError(str(exc)) from None
        result = {"url": db.url, "dialect": db.dialect, "from": before, "to": after, "head": head_revision()}
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    elif before == after:
        Console().print(f"{result['url']}: already at {after} (head)", highlight=False, soft_wrap=True)
    else:
        line = f"{result['url']}: migrated {before or 'empty'} -> {after} (head)"
        Console().print(line, highlight=False, soft_wrap=True)


@app.command(cls=OneLineUsageCommand)
@fail_on_user_error
def current(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show the database's schema revision and whether it is the newest."""
    from methtrader.store import DatabaseError
    from methtrader.store.migrate import head_revision

    with open_database(url) as db:
        try:
            revision = db.current_revision()
        except DatabaseError as exc:
            raise UserError(str(exc)) from None
        head = head_revision()
        result = {
            "url": db.url,
            "dialect": db.dialect,
            "current": revision,
            "head": head,
            "up_to_date": revision == head,
        }
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    state = "up to date" if revision == head else f"behind head {head}: run `methtrader db upgrade`"
    line = f"{result['url']}: {revision or 'empty (never migrated)'} ({state})"
    Console().print(line, highlight=False, soft_wrap=True)
