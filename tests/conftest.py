"""Fixtures shared by the whole suite."""

from collections.abc import Iterator

import pytest

from support.postgres_server import PostgresServer
from support.redis_server import RedisServer
from support.slack import SlackReceiver


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    """A local stand-in for a Slack incoming webhook that records the POSTed JSON bodies."""
    receiver = SlackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port for the whole session (skips if not installed)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's private Redis, emptied before the test (restarted if a test stopped it)."""
    import redis

    redis_server.thaw()
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL on a free port for the whole session, from the local binaries (run as the
    `postgres` user when the tests run as root). Fails, never skips, when PostgreSQL is not installed.
    A test may stop or kill it; `start()` brings it back with its data on the same port."""
    try:
        server = PostgresServer()
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the private server's `postgres` database (`postgres_server.create_database()`: a fresh one)."""
    return postgres_server.url()


@pytest.fixture(scope="session")
def _ledger_templates() -> dict[str, object]:
    return {}  # backend -> migrated template (SQLite file) or database URL (PostgreSQL), made on first use


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object, _ledger_templates: dict) -> str:
    """URL of a migrated, empty ledger, once on SQLite and once on the private PostgreSQL."""
    from support import ledger_db

    if request.param == "sqlite":
        if "sqlite" not in _ledger_templates:
            base = request.getfixturevalue("tmp_path_factory").mktemp("ledger-template")
            _ledger_templates["sqlite"] = ledger_db.migrate_sqlite_template(base)
        return ledger_db.fresh_sqlite(_ledger_templates["sqlite"], tmp_path)
    server = request.getfixturevalue("postgres_server")
    if "postgresql" not in _ledger_templates:
        server.start()
        _ledger_templates["postgresql"] = ledger_db.migrate_postgres_ledger(server)
    return ledger_db.emptied_postgres(server, _ledger_templates["postgresql"])


@pytest.fixture
def database(database_url: str) -> Iterator[object]:
    """A `methtrader.store.Database` on a migrated, empty ledger (parametrised: SQLite, PostgreSQL)."""
    from methtrader.store import Database

    db = Database.from_url(database_url)
    try:
        yield db
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------------
# Secrets never reach a log line: every record of the session, rendered by ops.logs' JSON formatter,
# and every subprocess output a test hands to `log_sink`, is grepped for the test secrets at the end.
SESSION_LOG_LEVEL = 10  # logging.DEBUG: record everything any test produces


@pytest.fixture(scope="session", autouse=True)
def session_log_record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A root handler for the whole session writing every record to a file under the pytest tmp dir."""
    import logging

    from support.secrets import start_recording

    handler = start_recording(tmp_path_factory.getbasetemp() / "session-logs")
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(SESSION_LOG_LEVEL)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture(autouse=True)
def _restore_session_logging(session_log_record: object) -> Iterator[None]:
    """After each test: drop a handler configure_logging installed and put the session recording back."""
    yield
    import logging

    from methtrader.ops.logs import reset_logging

    reset_logging()
    root = logging.getLogger()
    if session_log_record not in root.handlers:
        root.addHandler(session_log_record)  # type: ignore[arg-type]
    root.setLevel(SESSION_LOG_LEVEL)


@pytest.fixture
def log_sink() -> object:
    """``log_sink(text)``: add captured subprocess output to the lines grepped for the test secrets."""
    from support.secrets import log_sink as sink

    return sink


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any recorded log line or sunk output contains a test secret."""
    import sys

    from support.secrets import SECRETS, find_leaks, recorded, stop_recording

    sources = recorded()
    stop_recording()
    if not sources:
        return
    leaks = find_leaks(sources)
    lines = sum(1 for _, text in sources for line in text if not line.startswith("# test: "))
    summary = f"{lines} log lines grepped for {len(SECRETS)} test secrets"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        for text in [summary, *map(str, leaks)]:
            print(text, file=sys.stderr)
    elif not leaks:
        reporter.write_line("")
        reporter.write_sep("-", f"{summary}: none found")
    else:
        reporter.write_line("")
        reporter.write_sep("=", f"SECRET LEAK: {len(leaks)} of {summary}", red=True, bold=True)
        for leak in leaks[:20]:
            reporter.write_line(str(leak))
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
