"""Loki label hygiene: which fields of our log lines become labels, and whether their values stay few.
Every distinct label combination is a Loki stream, so ids as labels (or too many values) break Loki."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from methtrader.ops.logs import LABELS

DEFAULT_MAX_VALUES = 25
SAMPLE_VALUES = 5
MAX_LABEL_NAMES = 15
"""Loki's ``max_label_names_per_series`` default: a stream with more labels is rejected."""
MAX_LABEL_VALUE_LENGTH = 2048
"""Loki's ``max_label_value_length`` default."""

FORBIDDEN_LABELS: frozenset[str] = frozenset({
    "user_id", "uid", "account_id", "username", "email",
    "order_id", "order_link_id", "client_order_id", "trade_id", "exec_id", "execution_id", "fill_id",
    "position_id", "request_id", "trace_id", "span_id", "session_id", "correlation_id",
    "ip", "ip_address", "client_ip", "remote_addr", "remote_ip",
    "timestamp", "time", "ts", "message", "msg",
})  # fmt: skip
"""Unbounded values (ids, addresses, times, free text) that belong in the log line, never in labels.
Matched after normalising the name to snake_case (``orderLinkId`` → ``order_link_id``), also as a
suffix (``x_request_id``, ``bybit_uid``)."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class LabelInputError(ValueError):
    """The input is neither JSON-lines logs nor a Loki series dump (a one-line reason)."""


def normalise_label(name: str) -> str:
    """``orderLinkId`` → ``order_link_id``, ``X-Request-Id`` → ``x_request_id``."""
    return _CAMEL.sub("_", name).lower().replace("-", "_").replace(".", "_").replace(" ", "_")


def is_forbidden(name: str) -> bool:
    """True when ``name`` is an id-like label that makes every line its own stream."""
    norm = normalise_label(name)
    return norm in FORBIDDEN_LABELS or any(norm.endswith(f"_{bad}") for bad in FORBIDDEN_LABELS)


@dataclass
class LabelReport:
    """Unique values per label over every line or series read, and what Loki would not tolerate."""

    max_values: int = DEFAULT_MAX_VALUES
    records: int = 0
    values: dict[str, dict[str, None]] = field(default_factory=dict)
    too_many_names: int = 0
    widest: int = 0
    too_long: dict[str, int] = field(default_factory=dict)

    def add(self, labels: dict[str, str]) -> None:
        self.records += 1
        if len(labels) > MAX_LABEL_NAMES:
            self.too_many_names += 1
            self.widest = max(self.widest, len(labels))
        for name, value in labels.items():
            self.values.setdefault(name, {})[value] = None
            if len(value) > MAX_LABEL_VALUE_LENGTH:
                self.too_long[name] = self.too_long.get(name, 0) + 1

    def violations(self) -> list[str]:
        """One line per problem: forbidden labels first, then labels with too many values."""
        out = [
            f'label "{name}" is forbidden: ids, addresses and times belong in the log line, not in labels'
            for name in sorted(self.values)
            if is_forbidden(name)
        ]
        out += [
            f'label "{name}" has {len(seen)} unique values (at most {self.max_values} allowed)'
            for name, seen in sorted(self.values.items())
            if len(seen) > self.max_values
        ]
        out += [
            f'label "{name}" has {count} values longer than {MAX_LABEL_VALUE_LENGTH} characters'
            for name, count in sorted(self.too_long.items())
        ]
        if self.too_many_names:
            out.append(
                f"{self.too_many_names} lines carry more than {MAX_LABEL_NAMES} labels "
                f"(up to {self.widest}; Loki rejects them)"
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.violations()

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": {
                name: {"unique": len(seen), "values": list(seen)[:SAMPLE_VALUES]}
                for name, seen in sorted(self.values.items())
            },
            "violations": self.violations(),
            "ok": self.ok,
            "records": self.records,
        }


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _label_object(obj: Any, where: str) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise LabelInputError(f"{where}: a label set must be a JSON object, got {type(obj).__name__}")
    return {str(k): _value(v) for k, v in obj.items()}


def label_sets(obj: Any, promoted: Sequence[str], where: str) -> Iterator[dict[str, str]]:
    """The label sets one parsed JSON document carries: a log line (its promoted keys plus any
    ``stream``/``labels`` object), a Loki push body, or a Loki series or query API response."""
    if not isinstance(obj, dict):
        raise LabelInputError(f"{where}: expected a JSON object, got {_kind(obj)}")
    if "status" in obj and "data" in obj:
        if obj["status"] != "success":
            raise LabelInputError(f"{where}: Loki answered status {obj['status']!r}: {obj.get('error', '')}")
        data = obj["data"]
        if isinstance(data, dict) and isinstance(data.get("result"), list):  # query / query_range
            for i, item in enumerate(data["result"]):
                inner = item.get("stream", item.get("metric")) if isinstance(item, dict) else item
                yield _label_object(inner, f"{where}: data.result[{i}]")
            return
        if not isinstance(data, list):
            raise LabelInputError(f"{where}: Loki 'data' must be a list of label sets")
        for i, item in enumerate(data):
            yield _label_object(item, f"{where}: data[{i}]")
        return
    if isinstance(obj.get("streams"), list):  # a push request body
        for i, item in enumerate(obj["streams"]):
            inner = item.get("stream") if isinstance(item, dict) else item
            yield _label_object(inner, f"{where}: streams[{i}]")
        return
    labels = {name: _value(obj[name]) for name in promoted if name in obj}
    for key in ("stream", "labels"):
        if isinstance(obj.get(key), dict):
            labels.update(_label_object(obj[key], f"{where}: {key}"))
    yield labels


def _kind(obj: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number"
    )


def check_labels(
    lines: Iterable[str], *, promoted: Sequence[str] = LABELS, max_values: int = DEFAULT_MAX_VALUES
) -> LabelReport:
    """Read JSON-lines logs, or one (possibly pretty-printed) JSON document such as a Loki series dump,
    and count the unique values of every label. Raises LabelInputError on bad or empty input."""
    report = LabelReport(max_values=max_values)
    iterator = iter(lines)
    number = 0
    for raw in iterator:
        number += 1
        line = raw.strip()
        if not line:
            continue
        try:
            first = json.loads(line)
        except json.JSONDecodeError as exc:
            # Not one object per line: perhaps a pretty-printed document (a Loki API dump).
            rest = line + "\n" + "".join(iterator)
            try:
                document = json.loads(rest)
            except json.JSONDecodeError:
                raise LabelInputError(f"line {number}: not JSON ({exc.msg})") from None
            for labels in label_sets(document, promoted, "document"):
                report.add(labels)
            break
        for labels in label_sets(first, promoted, f"line {number}"):
            report.add(labels)
        for raw_next in iterator:
            number += 1
            line = raw_next.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelInputError(f"line {number}: not JSON ({exc.msg})") from None
            for labels in label_sets(obj, promoted, f"line {number}"):
                report.add(labels)
    if report.records == 0:
        raise LabelInputError("empty input: no log lines or label sets")
    return report
