"""`methtrader db upgrade|current` on SQLite and PostgreSQL, and the one-line errors of bad input."""

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.store.migrate import head_revision
from support.redis_server import free_port

runner = CliRunner()


def assert_one_line_error(result: Any, *expected: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(text in lines[0] for text in expected), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    server = request.getfixturevalue("postgres_server")
    server.start()
    return server.create_database()


def test_upgrade_then_current(empty_url: str) -> None:
    before = runner.invoke(app, ["db", "current", "--url", empty_url, "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout) | {"url": None} == {
        "url": None,
        "dialect": empty_url.split(":")[0].split("+")[0],
        "current": None,
        "head": head_revision(),
        "up_to_date": False,
    }
    first = runner.invoke(app, ["db", "upgrade", "--url", empty_url, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["from"] is None and json.loads(first.stdout)["to"] == head_revision()
    again = runner.invoke(app, ["db", "upgrade", "--url", empty_url])
    assert again.exit_code == 0 and "already at" in again.stdout
    after = runner.invoke(app, ["db", "current", "--url", empty_url])
    assert after.exit_code == 0 and f"{head_revision()} (up to date)" in after.stdout


def test_the_default_is_sqlite_under_var(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METHTRADER_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "sqlite:///var/methtrader.db: migrated empty -> " in result.stdout
    assert (tmp_path / "var" / "methtrader.db").exists()


def test_the_url_comes_from_the_environment_with_its_password_file(
    tmp_path, monkeypatch, postgres_server
) -> None:
    postgres_server.start()
    url = postgres_server.create_database()
    secret = tmp_path / "password"
    secret.write_text("not-needed-trust-auth\n")
    monkeypatch.setenv("METHTRADER_DATABASE_URL", url)
    monkeypatch.setenv("METHTRADER_DATABASE_PASSWORD_FILE", str(secret))
    result = runner.invoke(app, ["db", "upgrade", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["url"]
    assert shown.startswith("postgresql+psycopg://postgres:***@") and "not-needed" not in result.output


def test_an_unreachable_database_is_one_line(monkeypatch) -> None:
    url = f"postgresql+psycopg://trader:s3cr3t-db-pw@127.0.0.1:{free_port()}/ledger"
    for command in (["db", "upgrade"], ["db", "current"], ["audit", "verify", "--log"]):
        line = assert_one_line_error(runner.invoke(app, [*command, "--url", url]), "127.0.0.1", "refused")
        assert "s3cr3t-db-pw" not in line and "trader:***@" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["db", "upgrade", "--url", "not a url"], "not a database URL"),
        (["db", "current", "--url", "mysql://a@b/c"], "unsupported database 'mysql'"),
        (["db", "upgrade", "--url", "sqlite:////proc/nope/x.db"], "cannot create the directory"),
        (["db", "upgrade", "--bogus"], "No such option: --bogus"),
        (["db", "upgrade", "--url"], "requires an argument"),
        (["db", "downgrade"], "No such command 'downgrade'"),
        (["audit", "verify", "--log", "one", "two"], "unexpected extra argument"),
        (["audit", "verify", "--nope"], "No such option: --nope"),
        (["audit", "verify"], "or --log"),
    ],
)
def test_bad_input_is_one_line(args: list[str], expected: str) -> None:
    assert_one_line_error(runner.invoke(app, args), expected)


def test_a_bad_environment_url_is_one_line(monkeypatch) -> None:
    monkeypatch.setenv("METHTRADER_DATABASE_URL", "::nonsense::")
    assert_one_line_error(runner.invoke(app, ["db", "current"]), "not a database URL")
