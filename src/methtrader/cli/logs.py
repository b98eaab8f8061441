"""`methtrader logs check-labels FILE|-`: would these logs be safe to ship to Loki?
Counts unique values per label and fails on id-like labels or too many values (exit 1), bad input exit 2."""

import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table

from methtrader.cli.errors import UserError, fail_on_user_error
from methtrader.ops.labels import (
    DEFAULT_MAX_VALUES,
    SAMPLE_VALUES,
    LabelInputError,
    LabelReport,
    check_labels,
    is_forbidden,
)
from methtrader.ops.logs import LABELS

app = typer.Typer(help="Structured logs: check what Loki would index.", no_args_is_help=True)


def _promoted(labels: str | None) -> tuple[str, ...]:
    if labels is None:
        return LABELS
    names = tuple(name.strip() for name in labels.split(",") if name.strip())
    if not names:
        raise UserError("--labels needs at least one label name, e.g. --labels app,env,level")
    return names


def _read(source: str, promoted: tuple[str, ...], max_values: int) -> LabelReport:
    try:
        if source == "-":
            return check_labels(sys.stdin, promoted=promoted, max_values=max_values)
        path = Path(source)
        with path.open(encoding="utf-8") as handle:
            return check_labels(handle, promoted=promoted, max_values=max_values)
    except LabelInputError as exc:
        raise UserError(f"{source}: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"{source}: cannot read ({exc.strerror or exc})") from None


def _table(report: LabelReport) -> Table:
    table = Table(title=f"labels of {report.records:,} records (log lines or series)")
    table.add_column("label", style="bold")
    table.add_column("unique", justify="right")
    table.add_column(f"values (first {SAMPLE_VALUES})", overflow="fold")
    table.add_column("")
    for name, seen in sorted(report.values.items()):
        bad = is_forbidden(name) or len(seen) > report.max_values
        sample = ", ".join(list(seen)[:SAMPLE_VALUES])
        table.add_row(name, f"{len(seen):,}", sample, "[red]FAIL[/]" if bad else "[green]ok[/]")
    return table


@app.command("check-labels")
@fail_on_user_error
def check_labels_command(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="JSON-lines logs or a Loki series dump; - reads stdin.")
    ],
    labels: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated keys promoted to labels (default: {','.join(LABELS)})."),
    ] = None,
    max_values: Annotated[
        int, typer.Option(min=1, help="Fail when a label has more unique values than this.")
    ] = DEFAULT_MAX_VALUES,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Count unique values per label; exit 1 on forbidden (id-like) labels or too many values."""
    report = _read(source, _promoted(labels), max_values)
    violations = report.violations()
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    else:
        Console().print(_table(report))
        _print_violations(violations, sys.stderr)
    if violations:
        raise typer.Exit(1)


def _print_violations(violations: list[str], stream: TextIO) -> None:
    for line in violations:
        stream.write(f"violation: {line}\n")
