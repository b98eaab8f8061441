"""`methtrader audit pull TRADE_ID --out DIR [--format zip]`: a regulator bundle of one trade;
`methtrader audit verify DIR_OR_ZIP`: recompute its hashes and ids; `methtrader audit verify --log`: is
the hash-chained audit log intact? Exit 0 ok, 1 naming each problem (the first broken log row: id,
kind, time), 2 on bad input."""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from methtrader.cli.db import JsonOption, TrackingUriOption, UrlOption, open_database
from methtrader.cli.errors import OneLineUsageCommand, OneLineUsageGroup, UserError, fail_on_user_error

app = typer.Typer(
    cls=OneLineUsageGroup,
    help="The audit trail: regulator bundles of a trade, and the tamper-evident audit log.",
    no_args_is_help=True,
)


@app.command(cls=OneLineUsageCommand)
@fail_on_user_error
def verify(
    bundle: Annotated[
        str | None,
        typer.Argument(help="A bundle directory or zip written by `audit pull`.", show_default=False),
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Verify the database's hash-chained audit log.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute every hash of a bundle (and check its ids agree), or of the audit log (--log) and check
    the chain; name each problem."""
    from sqlalchemy import inspect

    from methtrader.audit import verify_chain
    from methtrader.audit.rows import check_ledger
    from methtrader.store import DatabaseError

    if bundle is None and not log:
        raise UserError("nothing to verify: pass a bundle DIR or ZIP, or --log (the database's audit log)")
    bundle_ok = _verify_bundle(bundle, as_json) if bundle is not None else True
    if not log:
        if not bundle_ok:
            raise typer.Exit(1)
        return
    with open_database(url) as db:
        try:
            db.ping()
            with db.connect() as connection:
                if not inspect(connection).has_table("audit_log"):
                    raise UserError(f"{db.url} has no audit log (run `methtrader db upgrade` first)")
            report = verify_chain(db)
            checked, problems = check_ledger(db)
        except DatabaseError as exc:
            raise UserError(str(exc)) from None
    if as_json:
        rows = {"rows_checked": checked, "row_problems": [p.as_dict() for p in problems]}
        sys.stdout.write(json.dumps({**report.as_dict(), **rows, "ok": report.ok and not problems}) + "\n")
    elif report.ok and not problems:
        Console().print(
            f"audit log intact: {report.rows:,} entries, last hash {report.last_hash}; "
            f"{checked:,} ledger rows agree with it",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err = Console(stderr=True)
        if not report.ok:
            err.print(f"TAMPERED: {report.first_break}", highlight=False, soft_wrap=True, markup=False)
        for problem in problems:
            err.print(f"TAMPERED: {problem}", highlight=False, soft_wrap=True, markup=False)
    if not report.ok or problems or not bundle_ok:
        raise typer.Exit(1)


def _verify_bundle(path: str, as_json: bool) -> bool:
    from methtrader.audit.bundle import BundleError, bundle_summary, verify_bundle

    try:
        problems = verify_bundle(path)
        summary = bundle_summary(path)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        sys.stdout.write(
            json.dumps({"bundle": path, "ok": not problems, "problems": problems, **summary}) + "\n"
        )
    elif not problems:
        Console().print(
            f"bundle intact: trade {summary['trade_id']}, {summary['files']} files, all hashes and ids agree",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err = Console(stderr=True)
        for problem in problems:
            err.print(f"BROKEN: {problem}", highlight=False, soft_wrap=True, markup=False)
    return not problems


@app.command(cls=OneLineUsageCommand)
@fail_on_user_error
def pull(
    trade_id: Annotated[
        str, typer.Argument(help="The trade id (the order's orderLinkId).", show_default=False)
    ],
    out: Annotated[
        str,
        typer.Option("--out", "-o", help="Bundle to write: a new directory, or FILE.zip with --format zip."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="dir (a directory) or zip (one file).")] = "dir",
    url: UrlOption = None,
    blobs: Annotated[
        str | None,
        typer.Option(
            help="Features blob store: directory or fsspec URL (default: $METHTRADER_BLOBS_URL or var/blobs)."
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a regulator bundle for one trade: order and events, fills, lineage and risk snapshot, the
    features blob, the model's MLflow record, an HTML report and a manifest of every id, time and hash."""
    import time
    from pathlib import Path

    from methtrader.audit.bundle import BundleError, LedgerDisagreesError, read_bundle
    from methtrader.audit.bundle import pull as pull_bundle

    if fmt not in ("dir", "zip"):
        raise UserError(f"--format must be dir or zip, not {fmt!r}")
    started = time.perf_counter()
    console = Console(stderr=True)
    with open_database(url) as db:
        database = db.engine.url.database if db.dialect == "sqlite" else None
        if (
            database
            and database != ":memory:"
            and not database.startswith("file:")
            and not Path(database).is_file()
        ):
            raise UserError(f"no ledger at {database} (pass --url or set METHTRADER_DATABASE_URL)")
        try:
            with console.status(f"pulling trade {trade_id}", spinner="dots") as status:
                path = pull_bundle(
                    db,
                    trade_id,
                    out,
                    blobs=blobs,
                    tracking_uri=tracking_uri,
                    fmt=fmt,  # type: ignore[arg-type]
                    status=lambda message: status.update(message),
                )
        except LedgerDisagreesError as exc:
            Console(stderr=True).print(
                f"REFUSED: trade {trade_id} disagrees with the audit chain: {exc}",
                highlight=False, soft_wrap=True, markup=False,
            )  # fmt: skip
            raise typer.Exit(1) from None
        except BundleError as exc:
            raise UserError(str(exc)) from None
    seconds = time.perf_counter() - started
    files = read_bundle(path)
    if as_json:
        manifest = json.loads(files["manifest.json"])
        payload = {
            "trade_id": trade_id,
            "path": str(path),
            "format": fmt,
            "seconds": round(seconds, 3),
            "files": manifest["files"],
            "ids": manifest["ids"],
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    Console().print(
        f"wrote {path}: {len(files)} files for trade {trade_id} in {seconds:.2f} s "
        f"(check it with `methtrader audit verify {path}`)",
        highlight=False,
        soft_wrap=True,
    )
