"""Structured JSON logs for every methtrader process: one event per line with a fixed, Loki-safe label set.
Library logs (httpx, uvicorn, ccxt) go through the same renderer, and registered secrets never reach a line.

Every line starts with ``timestamp`` (ISO 8601, UTC), ``level``, ``event``, ``app``, ``env`` and
``component``; everything else (order ids, amounts, endpoints) is a body field, never a label.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import quote, unquote, urlsplit

import structlog

APP = "methtrader"
LABELS: tuple[str, ...] = ("app", "env", "component", "level")
"""The only fields a log shipper may promote to Loki labels; everything else stays in the line."""
HEADER: tuple[str, ...] = ("timestamp", "level", "event", "app", "env", "component")
"""The first keys of every line, in this order."""
ENV_VAR = "METHTRADER_ENV"
DEFAULT_ENV = "dev"
REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 4
"""Shorter literals are not registered: redacting every "ab" would destroy the log, not protect it."""

SECRET_KEY_NAMES: tuple[str, ...] = (
    "api_key", "apikey", "api_secret", "secret", "password", "passwd", "token", "authorization",
    "webhook", "webhook_url", "signature", "sign", "x_bapi_sign", "x_bapi_api_key", "cookie",
    "set_cookie", "private_key", "credentials",
)  # fmt: skip
"""Body keys whose value is always replaced; a key matches when it equals one of these or ends in
``_<name>`` after lower-casing and turning ``-`` into ``_`` (``db_password``, ``X-BAPI-SIGN``)."""

_KEY_RE = re.compile(rf"^(?:.*_)?(?:{'|'.join(map(re.escape, SECRET_KEY_NAMES))})$")
_COMPONENT_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,39}$")
# `password=...`, `"api_key": "..."`, `Authorization: Bearer ...` inside a message or a URL query.
_INLINE_KEYS = (
    r"x[-_]bapi[-_]sign|x[-_]bapi[-_]api[-_]key|api[-_]?key|api[-_]?secret|secret|password|passwd"
    r"|token|authorization|webhook(?:[-_]url)?|signature|cookie|private[-_]key"
)
_INLINE_RE = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9])(?i:{_INLINE_KEYS})[\"']?\s*[=:]\s*[\"']?(?i:(?:bearer|basic|token)\s+)?)"
    r"(?P<value>[^\s&\"',;}\]\)]+)"
)
# scheme://user:password@host — the password of any URL, registered or not.
_URL_PASSWORD = r"(?P<userinfo>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s@/]+)(?=@)"
_STANDARD_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message", "taskName", "_logger", "_name", "_record", "_from_structlog",
}  # fmt: skip

_lock = threading.RLock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] = re.compile(_URL_PASSWORD)
_structlog_ready = False
_factory_installed = False


# ------------------------------------------------------------------------------------------ redaction
def register_secret(value: str | None) -> None:
    """Redact ``value`` (an API secret, a webhook URL, a database URL or password) from every later line.
    A URL also registers its password and, for http(s), its path: a Slack webhook's path is the secret."""
    if not value:
        return
    value = value.strip()
    candidates = {value, quote(value, safe=""), unquote(value)}
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme and parts.netloc:
        if parts.password:
            candidates |= {parts.password, unquote(parts.password), quote(unquote(parts.password), safe="")}
        if parts.scheme in ("http", "https") and len(parts.path.strip("/")) >= 8:
            candidates.add(parts.path + (f"?{parts.query}" if parts.query else ""))
            candidates.add(parts.path)
    fresh = {c for c in candidates if len(c) >= MIN_SECRET_LENGTH and c != REDACTED}
    global _pattern
    with _lock:
        if fresh <= _secrets:
            return
        _secrets.update(fresh)
        literals = "|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True))
        _pattern = re.compile(f"{_URL_PASSWORD}|(?P<literal>{literals})")
    _install_record_factory()


def _replace(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    return f"{userinfo}{REDACTED}" if userinfo is not None else REDACTED


def redact(text: str) -> str:
    """``text`` with registered secrets, URL passwords and ``key=value`` credentials replaced by
    ``<redacted>``; the same rules every log line goes through."""
    text = _pattern.sub(_replace, text)
    return _INLINE_RE.sub(lambda m: f"{m.group('head')}{REDACTED}", text)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a body field named ``key`` holds a credential (its value is never logged)."""
    return _KEY_RE.match(key.lower().replace("-", "_").replace(" ", "_")) is not None


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with secrets redacted (Decimal and datetimes become strings)."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth > 8:
        return redact(repr(value))
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_key(str(k)) else _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return _clean(value.value, depth + 1)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    return redact(str(value))


def _redact_event(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in ("_record", "_from_structlog"):
            out[key] = value
        elif is_secret_key(key):
            out[key] = REDACTED
        else:
            out[key] = _clean(value)
    return out


def _redact_record(record: logging.LogRecord) -> None:
    """Redact a stdlib record in place as it is created, so that every handler (ours, pytest's, a
    library's) sees the clean message and exception text; structlog's event dicts are cleaned upstream."""
    if not isinstance(record.msg, dict):
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it later, as usual
            message = None
        if message is not None and (clean := redact(message)) != message:
            record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = _EXC_FORMATTER.formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean


_EXC_FORMATTER = logging.Formatter()


def _install_record_factory() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


# ------------------------------------------------------------------------------------------ rendering
class _Labels:
    """Sets the fixed labels: app and env always, component unless the event already bound one."""

    def __init__(self, env: str, component: str) -> None:
        self.env = env
        self.component = component

    def __call__(self, _: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict["app"] = APP
        event_dict["env"] = self.env
        if not event_dict.get("component"):
            event_dict["component"] = self.component
        return event_dict


def _foreign_fields(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """For a stdlib record: its logger name and its ``extra=`` fields as body fields."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        event_dict["logger"] = record.name
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_KEYS and key not in event_dict:
                event_dict[key] = value
    return event_dict


def _ordered(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    out = {key: event_dict.pop(key, None) for key in HEADER}
    if not isinstance(out["event"], str):
        out["event"] = redact(str(out["event"]))
    out.update(event_dict)
    return out


def _timestamper() -> structlog.processors.TimeStamper:
    return structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")


def make_formatter(component: str, *, env: str | None = None) -> logging.Formatter:
    """The JSON formatter every handler should use: one object per line, header keys first, redacted.
    Works for structlog events and plain ``logging`` records alike (for extra handlers and tests)."""
    _check_component(component)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, _foreign_fields, _timestamper()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _Labels(resolve_env(env), component),
            _redact_event,
            _ordered,
            structlog.processors.JSONRenderer(separators=(",", ":")),
        ],
    )


def _configure_structlog() -> None:
    """Route structlog through the standard library, so one handler renders both (idempotent)."""
    global _structlog_ready
    with _lock:
        if _structlog_ready:
            return
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.filter_by_level,
                structlog.stdlib.add_log_level,
                _timestamper(),
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.processors.StackInfoRenderer(),
                structlog.processors.format_exc_info,
                _redact_event,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        _structlog_ready = True


# ------------------------------------------------------------------------------------------ set-up
class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one root handler configure_logging owns; without a stream it writes to the current
    ``sys.stderr`` (looked up per line, so a redirected or captured stderr is honoured)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def resolve_env(env: str | None = None) -> str:
    """The ``env`` label: the argument, else ``METHTRADER_ENV``, else ``dev``."""
    value = (env or os.environ.get(ENV_VAR, "") or DEFAULT_ENV).strip().lower()
    _check_component(value, what="env")
    return value


def _check_component(value: str, what: str = "component") -> None:
    if not _COMPONENT_RE.match(value):
        raise ValueError(
            f"log {what} {value!r} must be a short lower-case name (a Loki label: keep it low-cardinality)"
        )


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(
    component: str, *, env: str | None = None, level: str | int = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log line of this process, structlog's and the standard library's, as JSON to ``stream``
    (default: stderr) at ``level`` and above. Calling it again replaces the handler, never adds one."""
    number = _level(level)
    formatter = make_formatter(component, env=env)
    _configure_structlog()
    _install_record_factory()
    handler = _Handler(stream)
    handler.setLevel(number)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    with _lock:
        for old in [h for h in root.handlers if isinstance(h, _Handler)]:
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(number)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            library = logging.getLogger(name)  # uvicorn's own handlers would print plain text
            for own in list(library.handlers):
                library.removeHandler(own)
            library.propagate = True
    return handler


def reset_logging() -> None:
    """Remove the handler configure_logging installed (tests, or handing logging back to an embedder)."""
    root = logging.getLogger()
    with _lock:
        for old in [h for h in root.handlers if isinstance(h, _Handler)]:
            root.removeHandler(old)


def get_logger(component: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger whose lines carry ``component`` as their label and ``context`` as body fields.
    Usable before configure_logging: events then reach whatever handlers the root logger has."""
    _check_component(component)
    _configure_structlog()
    _install_record_factory()
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(f"{APP}.{component}").bind(
        component=component, **context
    )
    return logger
