"""`methtrader logs check-labels FILE|-`: table and JSON reports, exit 1 with one line per violation,
exit 2 with a one-line error on bad input, and other commands keeping stdout free of log lines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from methtrader.cli.main import app

runner = CliRunner()


def our_line(component: str = "engine", **body: Any) -> str:
    header = {"timestamp": "2024-01-01T00:00:00Z", "level": "info", "event": "fill", "app": "methtrader"}
    return json.dumps({**header, "env": "prod", "component": component, **body})


def write(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def assert_one_line_error(result: Any, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_clean_logs_print_a_table_and_exit_0(tmp_path: Path) -> None:
    path = write(tmp_path, *(our_line(order_id=f"o-{i}") for i in range(50)), our_line("exchange"))
    result = runner.invoke(app, ["logs", "check-labels", path])
    assert result.exit_code == 0, result.output
    assert "labels of 51 records" in result.stdout
    for name in ("app", "env", "component", "level"):
        assert name in result.stdout
    assert "engine, exchange" in result.stdout and "order_id" not in result.stdout
    assert result.stderr == ""


def test_json_report_and_violations_exit_1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        *(our_line(f"c{i}") for i in range(30)),
        json.dumps({"stream": {"app": "methtrader", "orderLinkId": "t-1"}, "values": []}),
    )
    result = runner.invoke(app, ["logs", "check-labels", path, "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["records"] == 31
    assert report["labels"]["component"] == {"unique": 30, "values": ["c0", "c1", "c2", "c3", "c4"]}
    assert report["violations"] == [
        'label "orderLinkId" is forbidden: ids, addresses and times belong in the log line, not in labels',
        'label "component" has 30 unique values (at most 25 allowed)',
    ]

    table = runner.invoke(app, ["logs", "check-labels", path, "--max-values", "40"])
    assert table.exit_code == 1
    assert table.stderr.splitlines() == [
        'violation: label "orderLinkId" is forbidden: ids, addresses and times belong in the log line, '
        "not in labels"
    ]
    assert "FAIL" in table.stdout


def test_labels_option_and_stdin_series_dump() -> None:
    dump = {
        "status": "success",
        "data": [{"app": "methtrader", "env": "prod"}, {"app": "methtrader", "env": "dev"}],
    }
    result = runner.invoke(app, ["logs", "check-labels", "-", "--json"], input=json.dumps(dump, indent=2))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"]["env"] == {"unique": 2, "values": ["prod", "dev"]}

    lines = "\n".join(our_line(symbol=s, user_id=u) for s, u in [("BTCUSDT", "u1"), ("ETHUSDT", "u2")])
    result = runner.invoke(app, ["logs", "check-labels", "-", "--labels", "app, symbol,user_id"], input=lines)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        'violation: label "user_id" is forbidden: ids, addresses and times belong in the log line, '
        "not in labels"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read (No such file or directory)"),
        ("", "empty input"),
        ("this is not json\n", "line 1: not JSON"),
        (our_line() + "\n[1]\n", "line 2: expected a JSON object, got an array"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ],
)
def test_bad_input_is_a_one_line_error_exit_2(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / "input.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert_one_line_error(runner.invoke(app, ["logs", "check-labels", str(path)]), expected)


def test_bad_options_exit_2() -> None:
    assert_one_line_error(
        runner.invoke(app, ["logs", "check-labels", "-", "--labels", " , "], input=our_line()), "--labels"
    )
    result = runner.invoke(app, ["logs", "check-labels", "-", "--max-values", "0"], input=our_line())
    assert result.exit_code == 2 and result.stdout == ""


def test_installed_command_reads_a_pipe_and_keeps_stdout_json(log_sink: Callable[[str], None]) -> None:
    lines = "\n".join(our_line(f"c{i % 3}") for i in range(10)) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "methtrader.cli.main", "logs", "check-labels", "-", "--json"],
        input=lines, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    log_sink(proc.stdout)
    log_sink(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"]["component"]["unique"] == 3
    assert proc.stderr == ""


def test_other_commands_log_json_to_stderr_at_warning(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from methtrader.ops.logs import get_logger

    result = runner.invoke(app, ["logs", "check-labels", "-", "--json"], input=our_line())
    assert result.exit_code == 0
    get_logger("engine").info("not shown at WARNING")
    logging.getLogger("httpx").warning("library warning")
    err = capsys.readouterr().err
    [line] = [json.loads(text) for text in err.splitlines()]
    assert (line["event"], line["component"], line["logger"]) == ("library warning", "logs", "httpx")
