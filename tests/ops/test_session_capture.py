"""The suite's own secret check: every log record of the session is recorded in our JSON format,
subprocess output can be added with ``log_sink``, and the end-of-session grep finds a leaked secret."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

from methtrader.ops.logs import HEADER
from support.secrets import API_SECRET, SECRETS, WEBHOOK_TOKEN, find_leaks, recorded


def test_every_record_of_the_session_is_recorded_as_a_json_line() -> None:
    marker = f"capture-check-{uuid.uuid4().hex}"
    logging.getLogger("some.library").debug("%s at debug", marker)  # even below every other handler's level
    records, _ = recorded()
    [line] = [json.loads(text) for text in records[1] if marker in text]
    assert tuple(line)[: len(HEADER)] == HEADER
    assert (line["event"], line["level"], line["logger"]) == (f"{marker} at debug", "debug", "some.library")
    assert any(text.startswith("# test: tests/ops/test_session_capture.py::") for text in records[1])


def test_log_sink_adds_subprocess_output(log_sink: Callable[[str], None]) -> None:
    marker = f"sink-check-{uuid.uuid4().hex}"
    log_sink(f"first line {marker}\nsecond line\n")
    _, sink = recorded()
    lines = sink[1]
    at = next(i for i, text in enumerate(lines) if marker in text)
    assert lines[at - 1].startswith("# test: ") and "(subprocess)" in lines[at - 1]
    assert lines[at + 1] == "second line\n"


def test_the_final_grep_finds_and_locates_a_leak_without_repeating_the_secret() -> None:
    lines = [
        "# test: tests/x.py::test_a (log)\n",
        '{"event":"fine"}\n',
        f'{{"event":"posting to /services/T000/B000/{WEBHOOK_TOKEN}"}}\n',
        "# test: tests/x.py::test_b (subprocess)\n",
        f"Traceback: bad signature {API_SECRET}\n",
    ]
    leaks = find_leaks([("session.jsonl", lines)])
    assert [(leak.secret, leak.line_number, leak.test) for leak in leaks] == [
        ("WEBHOOK_TOKEN", 3, "tests/x.py::test_a (log)"),
        ("API_SECRET", 5, "tests/x.py::test_b (subprocess)"),
    ]
    report = "\n".join(map(str, leaks))
    assert "session.jsonl:3" in report and "<WEBHOOK_TOKEN>" in report
    assert all(secret not in report for secret in SECRETS.values())
    assert find_leaks([("clean", ['{"event":"<redacted>"}\n'])]) == []
