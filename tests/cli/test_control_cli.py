"""`brake`, `resume` and `control-status` on the command line: file and Redis backends, one-line errors."""

import json

import pytest
import typer
from typer.testing import CliRunner

from methtrader.cli.control import register
from methtrader.risk.control import FileControl, RedisControl, default_who

runner = CliRunner()
KEYS = {"seq", "action", "reason", "who", "at_ms", "backend"}


@pytest.fixture
def app(monkeypatch) -> typer.Typer:
    monkeypatch.delenv("METHTRADER_REDIS_URL", raising=False)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    return app


def invoke(app: typer.Typer, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_brake_then_resume_with_the_file_backend(app, tmp_path):
    state = str(tmp_path / "var")
    result = invoke(app, "brake", "--reason", "exchange outage", "--state-dir", state)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert "BRAKE #1" in result.stdout and "exchange outage" in result.stdout
    assert default_who() in result.stdout
    channel = FileControl(tmp_path / "var")
    assert channel.braked() and channel.latest().reason == "exchange outage"

    result = invoke(app, "resume", "-r", "all clear", "--who", "ann@desk", "--state-dir", state)
    assert result.exit_code == 0, result.output
    assert "RESUME #2" in result.stdout and "ann@desk" in result.stdout
    assert not channel.braked()
    assert [(c.seq, c.action, c.who) for c in channel.history()] == [
        (1, "brake", default_who()),
        (2, "resume", "ann@desk"),
    ]


def test_json_output_and_accounts(app, tmp_path):
    state = str(tmp_path)
    result = invoke(app, "brake", "--reason", "drill", "--json", "--state-dir", state, "--account", "acct-2")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == KEYS
    assert payload["seq"] == 1 and payload["action"] == "brake" and payload["reason"] == "drill"
    assert payload["backend"] == "file" and payload["who"] == default_who()
    assert (tmp_path / "control-acct-2.json").exists() and not (tmp_path / "control-default.json").exists()
    result = invoke(app, "brake", "--reason", "again", "--json", "--state-dir", state, "--account", "acct-2")
    assert json.loads(result.stdout)["seq"] == 2  # braking a braked account is recorded too


def test_control_status(app, tmp_path):
    state = str(tmp_path)
    result = invoke(app, "control-status", "--state-dir", state)
    assert result.exit_code == 0 and "no command recorded" in result.stdout
    assert json.loads(invoke(app, "control-status", "--json", "--state-dir", state).stdout) == []
    for i in range(12):
        action = "brake" if i % 2 == 0 else "resume"
        assert invoke(app, action, "--reason", f"step {i}", "--state-dir", state).exit_code == 0
    result = invoke(app, "control-status", "--state-dir", state)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "not braked" in lines[0] and "resume #12" in lines[0] and "step 11" in lines[0]
    assert len(lines) == 1 + 10 and "#3 " in lines[1] and "step 11" in lines[-1]
    rows = json.loads(invoke(app, "control-status", "--json", "--state-dir", state).stdout)
    assert [r["seq"] for r in rows] == list(range(3, 13))
    assert all(set(r) == KEYS and r["backend"] == "file" for r in rows)


@pytest.mark.parametrize("command", ["brake", "resume"])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_reason_is_required(app, tmp_path, command, reason):
    args = [command, "--state-dir", str(tmp_path)]
    if reason is not None:
        args += ["--reason", reason]
    line = assert_one_line_error(invoke(app, *args))
    assert "--reason" in line
    assert list(tmp_path.iterdir()) == []


def test_bad_account_is_one_line(app, tmp_path):
    line = assert_one_line_error(
        invoke(app, "brake", "--reason", "x", "--account", "../etc", "--state-dir", str(tmp_path))
    )
    assert "account" in line


def test_unreachable_or_invalid_redis_is_one_line(app, tmp_path):
    for command in ("brake", "resume"):
        line = assert_one_line_error(
            invoke(app, command, "--reason", "x", "--redis-url", "redis://127.0.0.1:1", "--json")
        )
        assert "redis://127.0.0.1:1" in line
    line = assert_one_line_error(
        invoke(app, "brake", "--reason", "x", env={"METHTRADER_REDIS_URL": "redis://127.0.0.1:1/0"})
    )
    assert "127.0.0.1:1" in line
    assert_one_line_error(invoke(app, "control-status", "--redis-url", "redis://127.0.0.1:1"))
    line = assert_one_line_error(invoke(app, "brake", "--reason", "x", "--redis-url", "ftp://nowhere"))
    assert "invalid Redis URL" in line
    line = assert_one_line_error(
        invoke(app, "brake", "--reason", "x", "--redis-url", "redis://ops:hunter2@127.0.0.1:1/0")
    )
    assert "hunter2" not in line


def test_redis_backend(app, redis_url, tmp_path):
    result = invoke(app, "brake", "--reason", "shared", "--json", env={"METHTRADER_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["backend"] == "redis" and payload["seq"] == 1
    with RedisControl(redis_url) as channel:
        assert channel.braked() and channel.latest().reason == "shared"
    result = invoke(app, "resume", "--reason", "ok", "--redis-url", redis_url, "--state-dir", str(tmp_path))
    assert result.exit_code == 0 and "RESUME #2" in result.stdout
    assert list(tmp_path.iterdir()) == []  # Redis wins over the state directory
    rows = json.loads(invoke(app, "control-status", "--json", "--redis-url", redis_url).stdout)
    assert [(r["seq"], r["action"], r["backend"]) for r in rows] == [
        (1, "brake", "redis"),
        (2, "resume", "redis"),
    ]
