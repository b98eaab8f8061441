"""The one exception the CLI turns into `error: <message>` and exit code 2."""

import functools
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """Bad input from the user: a message that fits on one line, no traceback."""


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr (never wrapped) and exit 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def fail_on_user_error(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a Typer command so a UserError becomes a one-line error and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))

    return wrapper


try:  # Typer >= 0.20 vendors click; older versions use the click package
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]


def _one_line_usage_error(exc: UsageError) -> NoReturn:
    if isinstance(exc, NoArgsIsHelpError):  # prints the help, as `--help` would
        raise exc
    context = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
    fail(context + exc.format_message())


class OneLineUsageCommand(typer.core.TyperCommand):
    """A command whose bad options or arguments (unknown option, missing value, bad choice) end in
    `error: <command>: <reason>` on one line and exit 2, instead of click's boxed usage text."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            _one_line_usage_error(exc)


class OneLineUsageGroup(typer.core.TyperGroup):
    """A command group whose unknown sub-commands and bad options end in one line and exit 2."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            _one_line_usage_error(exc)

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            _one_line_usage_error(exc)
