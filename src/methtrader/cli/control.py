"""`methtrader brake`, `methtrader resume` and `methtrader control-status`.

BRAKE makes every process trading the account cancel its orders, flatten and halt; RESUME is the only
way back to trading. Both are recorded with who and why. Redis is used when ``--redis-url`` (or
``METHTRADER_REDIS_URL``) is set, otherwise files under ``--state-dir``. Bad input and an unreachable
store exit 2 with a one-line ``error: ...`` on stderr.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from methtrader.risk.control import (
    Action,
    ControlChannel,
    ControlCommand,
    ControlError,
    control_from_settings,
)

REDIS_ENV = "METHTRADER_REDIS_URL"
HISTORY_SHOWN = 10

ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why (required; recorded).")]
WhoOpt = Annotated[str | None, typer.Option(help="Who is acting (default: user@host).")]
StateDirOpt = Annotated[
    Path, typer.Option(help="State directory of the file backend (used when no Redis URL is set).")
]
RedisUrlOpt = Annotated[
    str | None,
    typer.Option(envvar=REDIS_ENV, help="Redis URL shared by all processes (overrides --state-dir)."),
]
AccountOpt = Annotated[str, typer.Option(help="Account whose processes receive the command.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def fail(message: str) -> NoReturn:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _channel(state_dir: Path, redis_url: str | None, account: str) -> ControlChannel:
    try:
        return control_from_settings(redis_url, state_dir, account)
    except (ControlError, ValueError) as exc:
        fail(_one_line(str(exc)))


def _payload(cmd: ControlCommand, backend: str) -> dict[str, object]:
    return {**cmd.to_dict(), "backend": backend}


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _issue(
    action: Action,
    reason: str | None,
    who: str | None,
    state_dir: Path,
    redis_url: str | None,
    account: str,
    as_json: bool,
) -> None:
    if reason is None or not reason.strip():
        fail(f"--reason is required: say why you {action} (it is recorded with your name)")
    if who is not None and not who.strip():
        fail("--who must not be empty")
    channel = _channel(state_dir, redis_url, account)
    try:
        cmd = channel.issue(action, reason, who)
    except (ControlError, ValueError) as exc:
        fail(_one_line(str(exc)))
    finally:
        channel.close()
    if as_json:
        sys.stdout.write(json.dumps(_payload(cmd, channel.backend), ensure_ascii=False) + "\n")
        return
    effect = (
        "processes cancel orders, flatten and halt"
        if action == "brake"
        else "processes may trade again (ACTIVE)"
    )
    Console().print(
        f"{action.upper()} #{cmd.seq} recorded for account {escape(account)} by {escape(cmd.who)} "
        f"via {escape(channel.describe())}: {escape(_one_line(cmd.reason))} — {effect}",
        highlight=False,
        soft_wrap=True,
    )


def brake(
    reason: ReasonOpt = None,
    who: WhoOpt = None,
    state_dir: StateDirOpt = Path("var"),
    redis_url: RedisUrlOpt = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """EMERGENCY BRAKE: every process on the account cancels all orders, flattens and halts."""
    _issue("brake", reason, who, state_dir, redis_url, account, as_json)


def resume(
    reason: ReasonOpt = None,
    who: WhoOpt = None,
    state_dir: StateDirOpt = Path("var"),
    redis_url: RedisUrlOpt = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Lift the brake: the only way back to ACTIVE trading."""
    _issue("resume", reason, who, state_dir, redis_url, account, as_json)


def control_status(
    state_dir: StateDirOpt = Path("var"),
    redis_url: RedisUrlOpt = None,
    account: AccountOpt = "default",
    as_json: Annotated[
        bool, typer.Option("--json", help=f"Print the last {HISTORY_SHOWN} commands as a JSON list.")
    ] = False,
) -> None:
    """Show whether the account is braked and the last commands (who, when, why)."""
    channel = _channel(state_dir, redis_url, account)
    try:
        latest = channel.fetch_latest()
        history = channel.history(HISTORY_SHOWN)
    except ControlError as exc:
        fail(_one_line(str(exc)))
    finally:
        channel.close()
    if as_json:
        rows = [_payload(cmd, channel.backend) for cmd in history]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    console = Console()
    where = escape(channel.describe())
    if latest is None:
        console.print(f"account {escape(account)}: no command recorded ({where})", highlight=False)
        return
    state = "[bold red]BRAKED[/]" if latest.is_brake else "[bold green]not braked[/]"
    console.print(
        f"account {escape(account)}: {state} — last {latest.action} #{latest.seq} by "
        f"{escape(latest.who)} at {_when(latest.at_ms)}: {escape(_one_line(latest.reason))} ({where})",
        highlight=False,
        soft_wrap=True,
    )
    for cmd in history:
        console.print(
            f"  #{cmd.seq:<4} {_when(cmd.at_ms)}  {cmd.action:<6}  {escape(cmd.who)}: "
            f"{escape(_one_line(cmd.reason))}",
            highlight=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    """Add `brake`, `resume` and `control-status` to ``app``."""
    app.command("brake")(brake)
    app.command("resume")(resume)
    app.command("control-status")(control_status)
