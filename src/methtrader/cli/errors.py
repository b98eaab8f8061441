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
