"""The BRAKE/RESUME control channel: files and Redis behave alike, across threads and processes."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from methtrader.risk import control as control_module
from methtrader.risk.control import (
    ControlChannel,
    ControlCommand,
    ControlError,
    FileControl,
    RedisControl,
    control_from_settings,
    default_who,
)
from support.redis_server import RedisServer

Factory = Callable[..., ControlChannel]
SRC = str(Path(control_module.__file__).resolve().parents[2])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> float:
    """Seconds until ``predicate()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None, Path]:
    """(name, redis_url or None, state_dir) — one store shared by every channel a test opens."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return request.param, url, tmp_path / "state"


@pytest.fixture
def make(backend: tuple[str, str | None, Path]) -> Iterator[Factory]:
    _, url, state_dir = backend
    opened: list[ControlChannel] = []

    def factory(account: str = "default") -> ControlChannel:
        channel = control_from_settings(url, state_dir, account)
        opened.append(channel)
        return channel

    yield factory
    for channel in opened:
        channel.close()


def settle(channel: ControlChannel, seq: int) -> None:
    """Redis readers learn of commands asynchronously: wait until ``channel`` has seen ``seq``."""
    wait_until(lambda: (c := channel.latest()) is not None and c.seq >= seq, timeout=2)


# ------------------------------------------------------------------------------------- the command


def test_command_json_round_trip_and_validation():
    cmd = ControlCommand(seq=3, action="brake", reason="exchange incident — halt", who="ann@desk", at_ms=17)
    assert ControlCommand.from_json(cmd.to_json()) == cmd
    assert ControlCommand.from_json(cmd.to_json().encode()) == cmd
    assert json.loads(cmd.to_json()) == {
        "seq": 3,
        "action": "brake",
        "reason": "exchange incident — halt",
        "who": "ann@desk",
        "at_ms": 17,
    }
    assert cmd.is_brake
    fresh = ControlCommand(seq=1, action="resume", reason="ok")
    assert fresh.who == default_who() and "@" in fresh.who
    assert abs(fresh.at_ms - time.time() * 1000) < 5_000
    for bad in (
        "not json",
        "[]",
        '{"seq": 1, "action": "brake", "reason": "x", "who": "a"}',
        '{"seq": 0, "action": "brake", "reason": "x", "who": "a", "at_ms": 1}',
        '{"seq": true, "action": "brake", "reason": "x", "who": "a", "at_ms": 1}',
        '{"seq": 1, "action": "halt", "reason": "x", "who": "a", "at_ms": 1}',
        '{"seq": 1, "action": "brake", "reason": 5, "who": "a", "at_ms": 1}',
    ):
        with pytest.raises(ValueError):
            ControlCommand.from_json(bad)


def test_control_from_settings_picks_the_backend(tmp_path):
    assert isinstance(control_from_settings(None, tmp_path, "default"), FileControl)
    assert isinstance(control_from_settings("  ", tmp_path, "default"), FileControl)
    redis_channel = control_from_settings("redis://127.0.0.1:1/0", tmp_path, "acct-1")
    try:
        assert isinstance(redis_channel, RedisControl)
        assert redis_channel.key == "methtrader:acct-1:control"
        assert redis_channel.log_key == "methtrader:acct-1:control:log"
        assert redis_channel.seq_key == "methtrader:acct-1:control:seq"
        assert redis_channel.channel == "methtrader:acct-1:control"
    finally:
        redis_channel.close()
    file_channel = control_from_settings(None, tmp_path, "acct-1")
    assert isinstance(file_channel, FileControl)
    assert file_channel.path == tmp_path / "control-acct-1.json"
    assert file_channel.log_path == tmp_path / "control-acct-1.log"
    for account in ("", "../etc", "a b", "x" * 65):
        with pytest.raises(ValueError):
            FileControl(tmp_path, account)


# ---------------------------------------------------------------------------------- both backends


def test_issue_latest_history_braked(make):
    channel = make()
    assert channel.latest() is None and not channel.braked() and channel.history() == []
    first = channel.issue("brake", "exchange incident", who="ann@desk")
    assert (first.seq, first.action, first.reason, first.who) == (1, "brake", "exchange incident", "ann@desk")
    settle(channel, 1)
    assert channel.braked() and channel.latest() == first and channel.fetch_latest() == first
    # Braking a braked account is still recorded (who/why), with the next seq.
    again = channel.issue("brake", "  still bad  ", who="bob@desk")
    assert (again.seq, again.reason) == (2, "still bad")
    back = channel.issue("resume", "incident over", who="ann@desk")
    settle(channel, 3)
    assert back.seq == 3 and not channel.braked() and channel.latest() == back
    # RESUME when not braked is allowed and recorded too.
    extra = channel.issue("resume", "double check")
    assert extra.seq == 4 and extra.who == default_who()
    assert channel.history() == [first, again, back, extra]
    assert channel.history(2) == [back, extra]
    assert channel.history(0) == []
    assert channel.healthy
    assert first.at_ms <= again.at_ms <= back.at_ms <= extra.at_ms


def test_bad_commands_are_rejected(make):
    channel = make()
    for action, reason in (("brake", ""), ("brake", "   "), ("halt", "why"), ("resume", None)):
        with pytest.raises(ValueError):
            channel.issue(action, reason)  # type: ignore[arg-type]
    assert channel.history() == []


def test_another_instance_sees_the_command_and_accounts_are_separate(make):
    writer, reader, other_account = make(), make(), make("other")
    assert reader.latest() is None
    cmd = writer.issue("brake", "drill")
    wait_until(lambda: reader.latest() == cmd, timeout=1.5)
    assert reader.braked() and not other_account.braked() and other_account.history() == []
    assert other_account.issue("brake", "separate").seq == 1


def test_concurrent_threads_never_share_a_seq(make):
    channels = [make() for _ in range(4)]
    barrier = threading.Barrier(4)
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(channel: ControlChannel, n: int) -> None:
        barrier.wait()
        for i in range(10):
            cmd = channel.issue("brake" if i % 2 else "resume", f"thread {n} #{i}")
            with lock:
                seqs.append(cmd.seq)

    threads = [threading.Thread(target=worker, args=(ch, n)) for n, ch in enumerate(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(seqs) == list(range(1, 41))
    assert [c.seq for c in channels[0].history()] == list(range(1, 41))
    assert channels[0].fetch_latest().seq == 40


# The child processes below build their channel exactly as a trading process would.
CHILD_PRELUDE = """
import json, sys, time
from methtrader.risk.control import control_from_settings
backend, url, state_dir = json.loads(sys.argv[1])
channel = control_from_settings(url, state_dir, "default")
"""

ISSUER = (
    CHILD_PRELUDE
    + """
print("ready", flush=True)
sys.stdin.readline()
for i in range(10):
    print(channel.issue("brake", f"process {sys.argv[2]} #{i}").seq, flush=True)
channel.close()
"""
)

WATCHER = (
    CHILD_PRELUDE
    + """
channel.latest()
print("ready", flush=True)
while not channel.braked():
    time.sleep(0.002)
print(json.dumps({"seen": time.time(), "seq": channel.latest().seq, "healthy": channel.healthy}), flush=True)
channel.close()
"""
)


def spawn(script: str, backend: tuple[str, str | None, Path], *args: str) -> subprocess.Popen[str]:
    name, url, state_dir = backend
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), json.dumps([name, url, str(state_dir)]), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def line_reader(proc: subprocess.Popen[str]) -> Callable[[float], str]:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def read(timeout: float) -> str:
        try:
            return lines.get(timeout=timeout).strip()
        except queue.Empty:
            proc.kill()
            pytest.fail(f"child said nothing within {timeout} s; stderr: {proc.stderr.read()}")  # type: ignore[union-attr]

    return read


def test_concurrent_processes_never_share_a_seq(backend, make):
    procs = [spawn(ISSUER, backend, str(n)) for n in range(4)]
    readers = [line_reader(p) for p in procs]
    try:
        for read in readers:
            assert read(10) == "ready"
        for p in procs:  # release all four at once
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        seqs = [int(read(10)) for read in readers for _ in range(10)]
        for p in procs:
            assert p.wait(timeout=10) == 0, p.stderr.read()  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.kill()
    assert sorted(seqs) == list(range(1, 41))
    history = make().history()
    assert [c.seq for c in history] == list(range(1, 41))
    assert {c.reason.split(" #")[0] for c in history} == {f"process {n}" for n in range(4)}


def test_a_polling_process_sees_a_brake_within_one_second(backend, make):
    proc = spawn(WATCHER, backend)
    read = line_reader(proc)
    try:
        assert read(10) == "ready"
        issued_at = time.time()
        cmd = make().issue("brake", "cross-process drill", who="test@ci")
        seen = json.loads(read(5))
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
    latency = seen["seen"] - issued_at
    assert seen["seq"] == cmd.seq and seen["healthy"] is True
    assert latency < 1.0, f"brake took {latency:.3f} s to reach another process"


# ---------------------------------------------------------------------------------- file backend


def test_file_poll_is_one_stat_while_nothing_changes(tmp_path, monkeypatch):
    channel = FileControl(tmp_path)
    channel.issue("brake", "cache check")
    reads = []
    original = ControlCommand.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls, text):
        reads.append(1)
        return original(cls, text)

    monkeypatch.setattr(ControlCommand, "from_json", classmethod(counting))
    reader = FileControl(tmp_path)
    first = reader.latest()
    start = time.perf_counter()
    for _ in range(20_000):
        assert reader.latest() is first
    elapsed = time.perf_counter() - start
    assert len(reads) == 1
    assert elapsed < 1.0, f"{elapsed / 20_000 * 1e6:.1f} µs per poll"
    cmd = channel.issue("resume", "same size?")  # a new file (new inode) is noticed at once
    reads.clear()
    assert reader.latest() == cmd and reader.latest() == cmd and len(reads) == 1


def test_file_files_are_atomic_json(tmp_path):
    channel = FileControl(tmp_path / "nested" / "var", "acct")
    a = channel.issue("brake", "one")
    b = channel.issue("resume", "two\nlines")
    assert json.loads(channel.path.read_text()) == b.to_dict()
    logged = [json.loads(line) for line in channel.log_path.read_text().splitlines()]
    assert logged == [a.to_dict(), b.to_dict()]
    assert sorted(p.name for p in channel.state_dir.iterdir()) == [
        "control-acct.json",
        "control-acct.lock",
        "control-acct.log",
    ]


def test_file_vanished_or_corrupt_state_keeps_the_brake_and_reports_unhealthy(tmp_path):
    channel = FileControl(tmp_path)
    brake = channel.issue("brake", "real")
    reader = FileControl(tmp_path)
    assert reader.braked() and reader.healthy
    channel.path.unlink()  # deleting the file is not a RESUME
    assert reader.latest() == brake and reader.braked() and not reader.healthy
    channel.path.write_text("{garbage")
    assert reader.latest() == brake and not reader.healthy
    assert reader.latest() == brake and not reader.healthy
    # The brake must always work: the seq continues from the log.
    again = channel.issue("brake", "after corruption")
    assert again.seq == 2
    assert reader.latest() == again and reader.healthy


def test_file_seq_continues_past_a_log_entry_the_latest_file_missed(tmp_path):
    channel = FileControl(tmp_path)
    channel.issue("brake", "one")
    lost = ControlCommand(seq=7, action="brake", reason="crashed before the rename", who="x", at_ms=1)
    with open(channel.log_path, "a") as f:
        f.write(lost.to_json() + "\n")
    assert channel.issue("resume", "next").seq == 8


def test_file_errors_on_issue_are_control_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    channel = FileControl(blocker / "var")
    with pytest.raises(ControlError, match="cannot record brake"):
        channel.issue("brake", "x")
    assert channel.latest() is None and not channel.healthy  # an unusable state dir: unknown state


# --------------------------------------------------------------------------------- redis backend


def test_redis_pubsub_delivers_in_milliseconds(redis_url):
    import redis

    with RedisControl(redis_url, poll_interval=30) as reader, RedisControl(redis_url) as writer:
        reader.start()  # with a 30 s poll only pub/sub can deliver in time
        assert reader.healthy and reader.latest() is None
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.pubsub_numsub(reader.channel)[0][1] == 1, timeout=2)
        client.close()
        cmd = writer.issue("brake", "pubsub")
        latency = wait_until(lambda: reader.latest() == cmd, timeout=1, interval=0.001)
        assert latency < 0.25


def test_redis_poll_notices_a_missed_message(redis_url):
    import redis

    with RedisControl(redis_url) as reader:
        assert reader.latest() is None
        cmd = ControlCommand(seq=1, action="brake", reason="set without publish", who="ops")
        client = redis.Redis.from_url(redis_url)
        client.set("methtrader:default:control", cmd.to_json())
        client.close()
        latency = wait_until(lambda: reader.latest() == cmd, timeout=2)
        assert latency < 1.0


def test_redis_latest_is_a_cheap_attribute_read(redis_url):
    with RedisControl(redis_url) as channel:
        channel.issue("brake", "speed")
        settle(channel, 1)
        start = time.perf_counter()
        for _ in range(50_000):
            channel.braked()
        assert time.perf_counter() - start < 0.5


def test_redis_unreachable_never_raises_from_latest(tmp_path):
    with RedisControl("redis://127.0.0.1:1/0") as channel:
        start = time.monotonic()
        assert channel.latest() is None and not channel.braked()
        assert not channel.healthy
        assert time.monotonic() - start < 2
        with pytest.raises(ControlError, match=r"cannot record brake in Redis at redis://127\.0\.0\.1:1"):
            channel.issue("brake", "x")
        with pytest.raises(ControlError):
            channel.history()
        with pytest.raises(ControlError):
            channel.fetch_latest()
    with pytest.raises(ControlError, match="invalid Redis URL"):
        RedisControl("http://example.com")


def test_redis_password_is_not_shown(tmp_path):
    channel = RedisControl("redis://user:s3cret@127.0.0.1:1/0")
    try:
        with pytest.raises(ControlError) as err:
            channel.issue("brake", "x")
        assert "s3cret" not in str(err.value) and "s3cret" not in channel.describe()
    finally:
        channel.close()


def test_redis_restart_keeps_last_known_and_recovers():
    with RedisServer() as server:
        reader = RedisControl(server.url)
        writer = RedisControl(server.url)
        try:
            writer.issue("brake", "first")
            brake = writer.issue("brake", "second")
            wait_until(lambda: reader.latest() == brake, timeout=1)
            assert reader.healthy

            server.stop()  # no persistence: the data is gone for good
            wait_until(lambda: not reader.healthy, timeout=2)
            assert reader.latest() == brake and reader.braked()
            with pytest.raises(ControlError):
                writer.issue("resume", "while down")

            server.start()
            wait_until(lambda: reader.healthy, timeout=3)
            assert reader.latest() == brake and reader.braked()  # an empty Redis does not lift a brake

            # A fresh CLI-like issuer starts the seq over; the reader still follows the store.
            with RedisControl(server.url) as fresh:
                resumed = fresh.issue("resume", "redis back")
            assert resumed.seq == 1
            wait_until(lambda: reader.latest() == resumed, timeout=3)
            assert not reader.braked() and reader.healthy
            # A long-lived issuer never goes backwards: it continues above what it has seen.
            assert writer.issue("brake", "after restart").seq == 3
            wait_until(lambda: reader.latest() is not None and reader.latest().seq == 3, timeout=2)
            assert reader.braked()
        finally:
            reader.close()
            writer.close()
