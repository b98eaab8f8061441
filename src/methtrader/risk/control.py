"""The human control channel: the emergency BRAKE and RESUME commands every trading process obeys.

Two human actions must reach every process trading the same account, on any machine:

* ``brake`` — processes cancel all orders, flatten and go HALTED; nothing new is sent.
* ``resume`` — the only way back to ACTIVE.

Each command is recorded with who issued it, why, when, and a sequence number that only ever grows.
Two backends implement the same :class:`ControlChannel` protocol:

* :class:`FileControl` — ``<state_dir>/control-<account>.json`` holds the latest command (replaced
  atomically) and ``<state_dir>/control-<account>.log`` every command as JSON lines (fsync'd). Good for
  processes on one machine. A poll is one ``os.stat`` while nothing changes.
* :class:`RedisControl` — key ``methtrader:<account>:control`` (latest), list ``…:control:log``
  (every command), counter ``…:control:seq`` and pub/sub channel ``methtrader:<account>:control``,
  all written by one Lua script. A background thread keeps a cached copy fresh through pub/sub plus
  a GET every ``poll_interval`` seconds, so :meth:`RedisControl.latest` is an attribute read.

Reading never raises into the trading loop: if the backing store cannot be read, ``latest()`` returns
the last command it knew and ``healthy`` turns False, which the risk guard treats as an unknown
state (fail closed). Issuing and reading the history do raise :class:`ControlError` — those are for
the command line, where a person sees the error.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

Action = Literal["brake", "resume"]
ACTIONS: tuple[str, ...] = get_args(Action)

_ACCOUNT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TAIL_BYTES = 64 * 1024
_WATCH_TICK = 0.1  # seconds the Redis watcher blocks waiting for a message


class ControlError(RuntimeError):
    """The control channel could not be written or read (one-line message, safe to show a person)."""


def default_who() -> str:
    """``user@host`` of the current process: the default author of a command."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers without a passwd entry)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ControlCommand:
    """One recorded human command. ``seq`` grows by one per command issued on the account."""

    seq: int
    action: Action
    reason: str
    who: str = field(default_factory=default_who)
    at_ms: int = field(default_factory=now_ms)

    @property
    def is_brake(self) -> bool:
        return self.action == "brake"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any) -> ControlCommand:
        if not isinstance(data, dict):
            raise ValueError("control command must be a JSON object")
        try:
            seq, action, reason, who, at_ms = (data[k] for k in ("seq", "action", "reason", "who", "at_ms"))
        except KeyError as exc:
            raise ValueError(f"control command lacks {exc.args[0]!r}") from None
        if not _is_int(seq) or seq < 1:
            raise ValueError(f"control command seq must be a positive integer, not {seq!r}")
        if action not in ACTIONS:
            raise ValueError(f"control command action must be brake or resume, not {action!r}")
        if not isinstance(reason, str) or not isinstance(who, str):
            raise ValueError("control command reason and who must be strings")
        if not _is_int(at_ms):
            raise ValueError(f"control command at_ms must be an integer, not {at_ms!r}")
        return cls(seq=seq, action=action, reason=reason, who=who, at_ms=at_ms)

    @classmethod
    def from_json(cls, text: str | bytes) -> ControlCommand:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"control command is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validated(action: str, reason: str, who: str | None) -> tuple[Action, str, str]:
    if action not in ACTIONS:
        raise ValueError(f"action must be brake or resume, not {action!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a reason is required")
    who = default_who() if who is None or not who.strip() else who.strip()
    return action, reason.strip(), who  # type: ignore[return-value]


def _check_account(account: str) -> str:
    if not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account):
        raise ValueError(
            f"account must be 1-64 characters of letters, digits, '_', '.', '-' (got {account!r})"
        )
    return account


@runtime_checkable
class ControlChannel(Protocol):
    """What trading processes and the CLI need from a control backend."""

    backend: str  # "file" or "redis"
    account: str

    def issue(self, action: Action, reason: str, who: str | None = None) -> ControlCommand:
        """Record and broadcast a command; raises ControlError if it could not be recorded."""
        ...

    def latest(self) -> ControlCommand | None:
        """The latest command (cheap; never raises: see ``healthy``)."""
        ...

    def fetch_latest(self) -> ControlCommand | None:
        """Read the latest command straight from the store; raises ControlError."""
        ...

    def history(self, limit: int | None = None) -> list[ControlCommand]:
        """Every recorded command, oldest first (only the last ``limit``); raises ControlError."""
        ...

    def braked(self) -> bool:
        """True when the latest command is a brake."""
        ...

    @property
    def healthy(self) -> bool:
        """False when the last attempt to read the store failed: the state is unknown."""
        ...

    def describe(self) -> str:
        """Where commands live, for messages (no secrets)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------- file


class FileControl:
    """Control commands in files under ``state_dir`` (one machine, any number of processes)."""

    backend = "file"

    def __init__(self, state_dir: Path | str, account: str = "default") -> None:
        self.account = _check_account(account)
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / f"control-{account}.json"
        self.log_path = self.state_dir / f"control-{account}.log"
        self.lock_path = self.state_dir / f"control-{account}.lock"
        self._cache: tuple[tuple[int, int, int] | None, ControlCommand | None] = (None, None)
        self._bad_key: tuple[int, int, int] | None = None
        self._healthy = True

    # -- reading (hot path) -------------------------------------------------------------------------

    def latest(self) -> ControlCommand | None:
        key, cached = self._cache
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if cached is not None:
                # Only RESUME may lift a brake: a vanished file is not a resume.
                self._set_healthy(False, f"{self.path} disappeared; keeping the last known command")
            return cached
        except OSError as exc:
            self._set_healthy(False, f"cannot stat {self.path}: {exc}")
            return cached
        new_key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if new_key == key:
            if not self._healthy:
                self._set_healthy(True)
            return cached
        if new_key == self._bad_key:  # the same unreadable file as last time: do not re-read it
            return cached
        try:
            cmd = ControlCommand.from_json(self.path.read_bytes())
        except FileNotFoundError:  # replaced between stat and read: next poll sees the new file
            return cached
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError):
                self._bad_key = new_key
            self._set_healthy(False, f"cannot read {self.path}: {exc}")
            return cached
        self._cache = (new_key, cmd)
        self._set_healthy(True)
        return cmd

    def braked(self) -> bool:
        cmd = self.latest()
        return cmd is not None and cmd.action == "brake"

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _set_healthy(self, ok: bool, why: str = "") -> None:
        if ok != self._healthy:
            if ok:
                log.info("control file %s readable again", self.path)
            else:
                log.warning("control channel unhealthy: %s", why)
        self._healthy = ok

    def fetch_latest(self) -> ControlCommand | None:
        try:
            return ControlCommand.from_json(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ControlError(f"cannot read {self.path}: {exc}") from None

    def history(self, limit: int | None = None) -> list[ControlCommand]:
        try:
            lines = self.log_path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ControlError(f"cannot read {self.log_path}: {exc}") from None
        commands = [cmd for cmd in map(_parse_line, lines) if cmd is not None]
        if limit is None:
            return commands
        return commands[-limit:] if limit > 0 else []

    def describe(self) -> str:
        return f"file {self.path}"

    # -- writing ------------------------------------------------------------------------------------

    def issue(self, action: Action, reason: str, who: str | None = None) -> ControlCommand:
        action, reason, who = _validated(action, reason, who)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with self._lock():
                seq = self._last_seq_on_disk() + 1
                cmd = ControlCommand(seq=seq, action=action, reason=reason, who=who, at_ms=now_ms())
                data = (cmd.to_json() + "\n").encode()
                self._append_log(data)
                self._replace_latest(data)
                st = os.stat(self.path)
        except OSError as exc:
            raise ControlError(f"cannot record {action} in {self.state_dir}: {exc}") from None
        self._cache = ((st.st_mtime_ns, st.st_size, st.st_ino), cmd)
        self._set_healthy(True)
        return cmd

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _last_seq_on_disk(self) -> int:
        """Highest seq in the latest file or the log (the log wins if a crash left the file behind)."""
        best = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            best = ControlCommand.from_json(self.path.read_bytes()).seq
        try:
            with open(self.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _TAIL_BYTES))
                tail = f.read().splitlines()
        except FileNotFoundError:
            return best
        for line in reversed(tail):
            cmd = _parse_line(line)
            if cmd is not None:
                return max(best, cmd.seq)
        return best

    def _append_log(self, data: bytes) -> None:
        created = not self.log_path.exists()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.state_dir)

    def _replace_latest(self, data: bytes) -> None:
        tmp = self.state_dir / f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.state_dir)

    def close(self) -> None:
        pass

    def __enter__(self) -> FileControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileControl({str(self.state_dir)!r}, account={self.account!r})"


def _parse_line(line: bytes) -> ControlCommand | None:
    if not line.strip():
        return None
    try:
        return ControlCommand.from_json(line)
    except ValueError:
        log.warning("skipping an unreadable control log line: %r", line[:200])
        return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


# -------------------------------------------------------------------------------------------- redis

# KEYS: latest, log, seq. ARGV: command JSON without seq, seq floor, channel.
# The seq never falls back below the latest command's (e.g. after the counter key was lost).
_ISSUE_LUA = """
local floor = tonumber(ARGV[2]) or 0
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' and tonumber(obj.seq) and tonumber(obj.seq) > floor then
    floor = tonumber(obj.seq)
  end
end
local seq = redis.call('INCR', KEYS[3])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[3], seq)
end
local payload = '{"seq":' .. string.format('%d', seq) .. ',' .. string.sub(ARGV[1], 2)
redis.call('SET', KEYS[1], payload)
redis.call('RPUSH', KEYS[2], payload)
redis.call('PUBLISH', ARGV[3], payload)
return payload
"""


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable url>"


class RedisControl:
    """Control commands in Redis, shared by every process on every machine trading ``account``.

    ``latest()``/``braked()``/``healthy`` only read attributes kept fresh by a daemon thread
    (started by the first call or by :meth:`start`): pub/sub delivers a command within
    milliseconds, and a GET every ``poll_interval`` seconds notices anything pub/sub missed.
    ``healthy`` is False when the last GET failed or none succeeded for ``stale_after`` seconds.
    If the key vanishes (a Redis restarted without persistence), the last known command is kept:
    only a RESUME lifts a brake.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        account: str = "default",
        *,
        poll_interval: float = 0.5,
        stale_after: float = 2.0,
        timeout: float = 1.0,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.account = _check_account(account)
        self.url = url
        self.key = f"methtrader:{account}:control"
        self.log_key = f"{self.key}:log"
        self.seq_key = f"{self.key}:seq"
        self.channel = self.key
        self.poll_interval = poll_interval
        self.stale_after = max(stale_after, 2 * poll_interval)
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=5,
            )
        except (ValueError, TypeError) as exc:
            raise ControlError(f"invalid Redis URL {redact_url(url)}: {exc}") from None
        self._script = self._client.register_script(_ISSUE_LUA)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._latest: ControlCommand | None = None
        self._pending_lower: ControlCommand | None = None
        self._ok = False
        self._last_ok = float("-inf")
        self._failed_once = False
        self._missing_warned = False
        self._next_poll = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    # -- reading (hot path) -------------------------------------------------------------------------

    def latest(self) -> ControlCommand | None:
        if self._thread is None or self._pid != os.getpid():
            self.start()
        return self._latest

    def braked(self) -> bool:
        cmd = self.latest()
        return cmd is not None and cmd.action == "brake"

    @property
    def healthy(self) -> bool:
        if self._thread is None or self._pid != os.getpid():
            self.start()
        return self._ok and time.monotonic() - self._last_ok < self.stale_after

    def start(self) -> None:
        """Read the current command once (so the first answer is right) and start the watcher thread."""
        if self._pid != os.getpid():  # forked: the watcher thread did not come along
            self._lock, self._stop = threading.Lock(), threading.Event()
            self._thread, self._pid = None, os.getpid()
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"methtrader-control-{self.account}", daemon=True
            )
        try:
            self._poll()
        except Exception as exc:  # called from the trading loop: never raise, report unhealthy
            self._mark_unhealthy(exc)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> RedisControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisControl({redact_url(self.url)!r}, account={self.account!r})"

    def describe(self) -> str:
        return f"redis {redact_url(self.url)} key {self.key}"

    # -- watcher thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        pubsub = None
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.channel)
                    self._poll()  # resynchronise: messages may have been missed while disconnected
                    backoff = 0.05
                # Short waits so close() returns promptly; each wake-up is one select() call.
                wait = min(_WATCH_TICK, max(0.0, self._next_poll - time.monotonic()))
                message = pubsub.get_message(timeout=wait)
                if message is not None and message.get("type") == "message":
                    self._on_message(message["data"])
                if time.monotonic() >= self._next_poll:
                    self._poll()
            except self._errors as exc:
                self._mark_unhealthy(exc)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                    pubsub = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:  # never let the watcher die silently
                log.exception("control watcher error")
                self._ok = False
                self._stop.wait(1.0)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _poll(self) -> None:
        raw = self._client.get(self.key)
        self._next_poll = time.monotonic() + self.poll_interval
        if raw is None:
            self._mark_ok()
            if self._latest is not None and not self._missing_warned:
                self._missing_warned = True
                log.warning("Redis key %s vanished; keeping the last known control command", self.key)
            return
        self._missing_warned = False
        try:
            cmd = ControlCommand.from_json(raw)
        except ValueError as exc:
            self._mark_unhealthy(exc)
            return
        self._mark_ok()
        with self._lock:
            current = self._latest
            if current is None or cmd.seq >= current.seq or self._pending_lower == cmd:
                # A lower seq is believed only when two polls agree (the store was reset);
                # a single lower read can be a GET that raced with our own issue().
                self._latest = cmd
                self._pending_lower = None
            else:
                self._pending_lower = cmd

    def _on_message(self, data: bytes) -> None:
        try:
            cmd = ControlCommand.from_json(data)
        except ValueError as exc:
            log.warning("ignoring a malformed control message: %s", exc)
            return
        self._mark_ok()
        self._remember(cmd)

    def _remember(self, cmd: ControlCommand) -> None:
        with self._lock:
            if self._latest is None or cmd.seq > self._latest.seq:
                self._latest = cmd

    def _mark_ok(self) -> None:
        if not self._ok:
            log.info("control channel %s reachable", self.describe())
        self._ok = True
        self._last_ok = time.monotonic()

    def _mark_unhealthy(self, exc: BaseException) -> None:
        if self._ok or not self._failed_once:
            log.warning("control channel %s unreachable: %s", self.describe(), exc)
        self._failed_once = True
        self._ok = False

    # -- writing and direct reads -------------------------------------------------------------------

    def issue(self, action: Action, reason: str, who: str | None = None) -> ControlCommand:
        action, reason, who = _validated(action, reason, who)
        body = json.dumps(
            {"action": action, "reason": reason, "who": who, "at_ms": now_ms()},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        floor = self._latest.seq if self._latest is not None else 0
        try:
            keys = [self.key, self.log_key, self.seq_key]
            payload = self._script(keys=keys, args=[body, floor, self.channel])
        except self._errors as exc:
            raise ControlError(f"cannot record {action} in Redis at {redact_url(self.url)}: {exc}") from None
        cmd = ControlCommand.from_json(payload)
        self._remember(cmd)
        return cmd

    def fetch_latest(self) -> ControlCommand | None:
        try:
            raw = self._client.get(self.key)
        except self._errors as exc:
            raise ControlError(f"cannot read Redis at {redact_url(self.url)}: {exc}") from None
        if raw is None:
            return None
        try:
            return ControlCommand.from_json(raw)
        except ValueError as exc:
            raise ControlError(f"{self.key} holds an unreadable command: {exc}") from None

    def history(self, limit: int | None = None) -> list[ControlCommand]:
        if limit is not None and limit <= 0:
            return []
        try:
            raw = self._client.lrange(self.log_key, -limit if limit else 0, -1)
        except self._errors as exc:
            raise ControlError(f"cannot read Redis at {redact_url(self.url)}: {exc}") from None
        return [cmd for cmd in map(_parse_line, raw) if cmd is not None]


def control_from_settings(redis_url: str | None, state_dir: Path | str, account: str) -> ControlChannel:
    """Redis when a URL is configured (shared across machines), else files under ``state_dir``."""
    if redis_url and redis_url.strip():
        return RedisControl(redis_url.strip(), account)
    return FileControl(Path(state_dir), account)
