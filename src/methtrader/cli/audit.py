"""`methtrader audit verify --log`: is the hash-chained audit log intact? Exit 0 intact, 1 naming the
first edited, inserted or deleted row (id, kind, time), 2 on bad input."""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from methtrader.cli.db import JsonOption, UrlOption, open_database
from methtrader.cli.errors import OneLineUsageCommand, OneLineUsageGroup, UserError, fail_on_user_error

app = typer.Typer(
    cls=OneLineUsageGroup,
    help="The audit trail: verify the tamper-evident audit log.",
    no_args_is_help=True,
)


@app.command(cls=OneLineUsageCommand)
@fail_on_user_error
def verify(
    log: Annotated[bool, typer.Option("--log", help="Verify the database's hash-chained audit log.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute every hash of the audit log and check the chain; name the first broken row."""
    from sqlalchemy import inspect

    from methtrader.audit import verify_chain
    from methtrader.store import DatabaseError

    if not log:
        raise UserError("nothing to verify: pass --log (the database's audit log)")
    with open_database(url) as db:
        try:
            db.ping()
            with db.connect() as connection:
                if not inspect(connection).has_table("audit_log"):
                    raise UserError(f"{db.url} has no audit log (run `methtrader db upgrade` first)")
            report = verify_chain(db)
        except DatabaseError as exc:
            raise UserError(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    elif report.ok:
        Console().print(
            f"audit log intact: {report.rows:,} rows, last hash {report.last_hash}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        Console(stderr=True).print(f"TAMPERED: {report.first_break}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
