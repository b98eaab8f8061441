"""ops.logs: the JSON line format, the fixed label set, stdlib and library logs in the same format,
redaction (secret keys, registered literals, database URLs, exception text) and idempotent set-up."""

from __future__ import annotations

import datetime as dt
import enum
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from methtrader.ops import logs
from methtrader.ops.logs import (
    HEADER,
    LABELS,
    REDACTED,
    configure_logging,
    get_logger,
    is_secret_key,
    redact,
    register_secret,
)
from support.secrets import API_SECRET, DB_PASSWORD, WEBHOOK_TOKEN, database_url
from support.slack import SlackReceiver

from .conftest import JsonLog


class Side(enum.Enum):
    BUY = "Buy"


def test_lines_start_with_the_header_keys_and_keep_ids_in_the_body(json_log: JsonLog) -> None:
    log = get_logger("exchange", venue="bybit")
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    log.info(
        "order sent", order_link_id="t-42-1", qty=Decimal("0.010"), side=Side.BUY, at=at, ratio=float("nan")
    )

    [line] = json_log.lines()
    assert tuple(line)[: len(HEADER)] == HEADER == ("timestamp", "level", "event", "app", "env", "component")
    assert (line["level"], line["event"], line["app"], line["env"]) == (
        "info",
        "order sent",
        "methtrader",
        "dev",
    )
    assert line["component"] == "exchange"  # the logger's component, not the process's
    stamp = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == dt.timedelta(0) and line["timestamp"].endswith("Z")
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    body = {k: v for k, v in line.items() if k not in HEADER}
    assert body == {
        "venue": "bybit",
        "order_link_id": "t-42-1",
        "qty": "0.010",  # Decimal keeps its digits, as a string
        "side": "Buy",
        "at": "2024-05-01T12:00:00+00:00",
        "ratio": "nan",
    }
    assert json_log.text.count("\n") == 1  # one event, one line


def test_label_set_is_fixed_and_part_of_the_header() -> None:
    assert LABELS == ("app", "env", "component", "level")
    assert set(LABELS) <= set(HEADER)


def test_stdlib_and_library_records_come_out_in_the_same_format() -> None:
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.addHandler(logging.StreamHandler(io.StringIO()))  # what uvicorn's own dictConfig does
    uvicorn.propagate = False
    json_log = JsonLog("sim", env="paper")

    logging.getLogger("methtrader.risk.control").warning("brake #%d by %s", 3, "ann", extra={"account": "a1"})
    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s"', "GET", "http://127.0.0.1/x", "HTTP/1.1 200 OK"
    )
    uvicorn.warning(
        "Invalid HTTP request received [%d]", 42, extra={"color_message": "\x1b[1mInvalid\x1b[0m"}
    )
    get_logger("alerts").warning("alert", kind="brake")

    lines = json_log.lines()
    assert [tuple(line)[:6] for line in lines] == [HEADER] * 4
    first, second, third, fourth = lines
    assert first["event"] == "brake #3 by ann" and first["logger"] == "methtrader.risk.control"
    assert first["account"] == "a1" and first["level"] == "warning"
    assert (first["component"], first["env"]) == ("sim", "paper")  # stdlib records: the process's component
    assert second["logger"] == "httpx" and second["event"].startswith("HTTP Request: GET")
    assert third["logger"] == "uvicorn.error" and "color_message" not in third
    assert fourth["component"] == "alerts" and fourth["kind"] == "brake"


def test_env_label_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METHTRADER_ENV", "prod")
    prod = JsonLog()
    get_logger("engine").warning("x")
    assert prod.lines()[0]["env"] == "prod"

    monkeypatch.delenv("METHTRADER_ENV")
    dev = JsonLog()
    get_logger("engine").warning("y")
    assert dev.lines()[0]["env"] == "dev"


def test_level_filters_structlog_and_stdlib_alike() -> None:
    json_log = JsonLog(level="WARNING")
    get_logger("engine").info("quiet")
    logging.getLogger("httpx").info("quiet too")
    get_logger("engine").warning("loud")
    logging.getLogger("httpx").error("loud too")
    assert [line["event"] for line in json_log.lines()] == ["loud", "loud too"]
    assert [line["level"] for line in json_log.lines()] == ["warning", "error"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: configure_logging("engine", level="LOUD"), "unknown log level"),
        (lambda: configure_logging("order-8f3a2b1c-4d5e-6f70-8192-a3b4c5d6e7f8-xyz"), "low-cardinality"),
        (lambda: get_logger("Order 42"), "low-cardinality"),
    ],
)
def test_bad_level_or_label_value_is_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_configure_twice_keeps_one_handler_and_writes_each_line_once() -> None:
    first = JsonLog()
    second = JsonLog()
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
    assert ours == [second.handler]
    get_logger("engine").warning("once")
    logging.getLogger("ccxt").warning("library once")
    assert first.text == ""
    assert [line["event"] for line in second.lines()] == ["once", "library once"]


def test_default_stream_is_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("cli", level="WARNING")
    get_logger("cli").warning("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to stderr"


# ----------------------------------------------------------------------------------------- redaction
@pytest.mark.parametrize(
    "key",
    ["api_key", "apiKey", "apikey", "secret", "api_secret", "password", "db_password", "passwd", "token",
     "access_token", "Authorization", "webhook", "webhook_url", "slack_webhook_url", "signature",
     "X-BAPI-SIGN", "X-BAPI-API-KEY", "cookie", "Set-Cookie"],
)  # fmt: skip
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["key", "order_link_id", "token_count", "secretary", "signed_at", "qty"])
def test_ordinary_key_names(key: str) -> None:
    assert not is_secret_key(key)


def test_values_of_secret_keys_are_redacted_at_any_depth(json_log: JsonLog) -> None:
    get_logger("exchange").info(
        "signed request",
        api_key="k-123456",
        headers={"X-BAPI-SIGN": "f00dfeed", "X-BAPI-API-KEY": "k-123456", "Content-Type": "application/json"},
        retries=[{"password": "hunter22", "attempt": 1}],
        webhook_url="https://hooks.slack.test/services/T/B/x",
        key="utilisation:/v5/order/create",
    )
    logging.getLogger("db").warning("connect", extra={"db_password": "hunter22", "host": "db"})
    signed, connect = json_log.lines()
    assert signed["api_key"] == REDACTED and signed["webhook_url"] == REDACTED
    assert signed["headers"] == {
        "X-BAPI-SIGN": REDACTED,
        "X-BAPI-API-KEY": REDACTED,
        "Content-Type": "application/json",
    }
    assert signed["retries"] == [{"password": REDACTED, "attempt": 1}]
    assert signed["key"] == "utilisation:/v5/order/create"
    assert connect["db_password"] == REDACTED and connect["host"] == "db"
    assert "hunter22" not in json_log.text and "f00dfeed" not in json_log.text


def test_registered_secret_is_redacted_in_every_string_of_every_line(json_log: JsonLog) -> None:
    register_secret(API_SECRET)
    get_logger("exchange").info(
        f"signing with {API_SECRET}", note=f"secret is {API_SECRET}!", ids=[API_SECRET]
    )
    logging.getLogger("ccxt.base").info("request %s", {"params": f"sig={API_SECRET}"})
    logging.getLogger("ccxt.base").info(f"preformatted {API_SECRET}")

    assert API_SECRET not in json_log.text
    structured, stdlib_arg, stdlib_plain = json_log.lines()
    assert structured["event"] == f"signing with {REDACTED}"
    assert structured["note"] == f"secret is {REDACTED}!" and structured["ids"] == [REDACTED]
    assert REDACTED in stdlib_arg["event"] and stdlib_plain["event"] == f"preformatted {REDACTED}"


def test_database_url_passwords_are_masked_even_unregistered(json_log: JsonLog) -> None:
    url = "postgresql+psycopg://trader:unregistered-pw@db.internal:5432/ledger"
    get_logger("store").info("connecting", url=url)
    logging.getLogger("sqlalchemy.engine").warning("connect to %s failed", "redis://:r3d1s-pw@cache:6379/0")
    first, second = json_log.lines()
    assert first["url"] == f"postgresql+psycopg://trader:{REDACTED}@db.internal:5432/ledger"
    assert second["event"] == f"connect to redis://:{REDACTED}@cache:6379/0 failed"
    assert "unregistered-pw" not in json_log.text and "r3d1s-pw" not in json_log.text


def test_registered_database_url_also_hides_its_bare_password(json_log: JsonLog) -> None:
    register_secret(database_url())
    get_logger("store").warning(f"auth failed for user trader with {DB_PASSWORD}", dsn=database_url())
    [line] = json_log.lines()
    assert DB_PASSWORD not in json_log.text
    assert line["event"] == f"auth failed for user trader with {REDACTED}"
    assert REDACTED in line["dsn"]


def test_exception_text_is_redacted_for_our_handler_and_any_other(
    json_log: JsonLog, caplog: pytest.LogCaptureFixture
) -> None:
    register_secret(API_SECRET)
    caplog.set_level(logging.INFO)
    try:
        raise PermissionError(f"invalid signature for secret {API_SECRET} at {database_url()}")
    except PermissionError:
        logging.getLogger("methtrader.exchange").exception("order rejected")
        get_logger("exchange").exception("order rejected (structlog)")
    stdlib, structured = json_log.lines()
    for line in (stdlib, structured):
        assert line["level"] == "error"
        assert "PermissionError: invalid signature" in line["exception"]
        assert REDACTED in line["exception"]
    assert API_SECRET not in json_log.text and DB_PASSWORD not in json_log.text
    assert "PermissionError" in caplog.text  # pytest's own handler got the redacted traceback too
    assert API_SECRET not in caplog.text and DB_PASSWORD not in caplog.text


def test_redact_rules() -> None:
    register_secret("s3cr3t-literal/with+chars")
    assert redact("a s3cr3t-literal/with+chars b") == f"a {REDACTED} b"
    assert redact("a s3cr3t-literal%2Fwith%2Bchars b") == f"a {REDACTED} b"  # its URL-encoded form
    assert (
        redact("GET /v5/order?api_key=abcd&symbol=BTCUSDT")
        == f"GET /v5/order?api_key={REDACTED}&symbol=BTCUSDT"
    )
    assert redact("{'X-BAPI-SIGN': 'f00d', 'n': 1}") == f"{{'X-BAPI-SIGN': '{REDACTED}', 'n': 1}}"
    assert redact("Authorization: Bearer abc.def") == f"Authorization: Bearer {REDACTED}"
    assert redact("nothing to hide, 42 fills") == "nothing to hide, 42 fills"
    register_secret("abc")  # too short to redact safely: ignored
    assert redact("abc") == "abc"


def test_registering_is_cheap_and_keeps_one_pattern() -> None:
    register_secret("another-secret-value-1")
    pattern = logs._pattern
    register_secret("another-secret-value-1")  # already known: nothing rebuilt
    assert logs._pattern is pattern
    register_secret("another-secret-value-2")
    assert logs._pattern is not pattern and logs._pattern.search("x another-secret-value-2 y")


def test_http_client_request_line_shows_no_webhook(json_log: JsonLog, slack: SlackReceiver) -> None:
    register_secret(slack.url)
    with httpx.Client(timeout=5) as client:
        assert client.post(slack.url, json={"text": "hi"}).status_code == 200
    [line] = [line for line in json_log.lines() if line.get("logger") == "httpx"]
    assert line["event"] == f'HTTP Request: POST {REDACTED} "HTTP/1.0 200 OK"'
    assert WEBHOOK_TOKEN not in json_log.text
    assert slack.paths[0].endswith(WEBHOOK_TOKEN)  # the request itself did use the secret URL


def test_a_process_logs_json_lines_without_its_secrets(log_sink: Callable[[str], None]) -> None:
    script = textwrap.dedent(
        """
        import logging, os
        from methtrader.ops.logs import configure_logging, get_logger, register_secret
        import sys
        configure_logging("run", level="INFO", stream=sys.stdout)
        register_secret(os.environ["API_SECRET"])
        register_secret(os.environ["DB_URL"])
        get_logger("engine").info("started", api_secret=os.environ["API_SECRET"], db=os.environ["DB_URL"])
        logging.getLogger("ccxt").warning("signing with %s", os.environ["API_SECRET"])
        get_logger("engine").warning("db " + os.environ["DB_URL"].split(":")[2])
        """
    )
    env = {**os.environ, "API_SECRET": API_SECRET, "DB_URL": database_url(), "METHTRADER_ENV": "paper"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    log_sink(proc.stdout)
    log_sink(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["event"] for line in lines][:2] == ["started", f"signing with {REDACTED}"]
    assert all(line["env"] == "paper" and line["app"] == "methtrader" for line in lines)
    assert API_SECRET not in proc.stdout and DB_PASSWORD not in proc.stdout
    assert lines[0]["api_secret"] == REDACTED and lines[2]["event"] == f"db {REDACTED}@127.0.0.1"
