"""`report.html` of a regulator bundle: one self-contained, readable page (no scripts, no external
files). Every value goes through `html.escape`; the page repeats what the JSON files say, and the
manifest, not this page, is the record of the hashes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from html import escape
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#111;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.h{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}.muted{color:#666}
"""


def _text(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list | tuple):
        return f"<code>{escape(json.dumps(value, sort_keys=True, default=str))}</code>"
    if isinstance(value, Decimal):
        return escape(format(value, "f"))
    return escape(str(value))


def _pairs(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(key)}</th><td>{_text(value)}</td></tr>" for key, value in rows)
    return f"<table>{body}</table>"


def _table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], numeric: Iterable[str] = ()) -> str:
    numeric = set(numeric)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if c in numeric else ''}>{_text(row.get(c))}</td>" for c in columns)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body or ''}</table>" if body else '<p class="muted">none</p>'


def _stamp(value: Any) -> Any:
    return value.get("utc") if isinstance(value, Mapping) else value


def render_report(
    *,
    manifest: Mapping[str, Any],
    order: Mapping[str, Any],
    fills: Sequence[Mapping[str, Any]],
    lineage: Mapping[str, Any] | None,
    model: Mapping[str, Any],
    features: Any,
    file_hashes: Mapping[str, str],
) -> str:
    """The bundle's human-readable page."""
    from methtrader.audit.bundle import iso

    ids = manifest.get("ids") or {}
    times = manifest.get("timestamps") or {}
    row = order.get("order") or {}
    events = [{**e, "time": iso(e.get("ts"))} for e in order.get("events") or []]
    fill_rows = [{**f, "time": iso(f.get("ts"))} for f in fills]
    trade_id = manifest.get("trade_id")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Trade {escape(str(trade_id))} — audit bundle</title><style>{STYLE}</style></head><body>",
        f"<h1>Trade <code>{escape(str(trade_id))}</code></h1>",
        f"<p class=muted>Audit bundle schema {escape(str(manifest.get('schema_version')))}, pulled "
        f"{_text(_stamp(times.get('pulled')))} from {_text((manifest.get('sources') or {}).get('database'))}."
        " Check it with <code>methtrader audit verify</code>.</p>",
        "<h2>Order</h2>",
        _pairs(
            (k, row.get(k))
            for k in (
                "trade_id",
                "exchange_order_id",
                "symbol",
                "side",
                "type",
                "time_in_force",
                "qty",
                "price",
                "reduce_only",
                "status",
                "filled_qty",
                "reject_reason",
                "mode",
                "strategy",
                "params_hash",
            )
        ),
        _pairs([("created", iso(row.get("created_ts"))), ("updated", iso(row.get("updated_ts")))]),
        "<h3>Events</h3>",
        _table(("seq", "time", "kind", "status", "payload"), events, numeric=("seq",)),
        "<h2>Fills</h2>",
        _table(
            ("exec_id", "time", "side", "qty", "price", "fee", "liquidity", "realised_pnl", "is_liquidation"),
            fill_rows,
            numeric=("qty", "price", "fee", "realised_pnl"),
        ),
    ]
    if fills:
        qty = sum((Decimal(str(f["qty"])) for f in fills), Decimal(0))
        notional = sum((Decimal(str(f["qty"])) * Decimal(str(f["price"])) for f in fills), Decimal(0))
        fees = sum((Decimal(str(f["fee"])) for f in fills), Decimal(0))
        average = notional / qty if qty else None
        parts.append(_pairs([("filled qty", qty), ("average price", average), ("fees", fees)]))
    parts.append("<h2>Decision lineage</h2>")
    if lineage:
        parts.append(
            _pairs(
                [
                    ("strategy", lineage.get("strategy")),
                    ("parameters", lineage.get("params")),
                    ("parameter hash", lineage.get("params_hash")),
                    ("model run id", lineage.get("model_run_id")),
                    ("model", lineage.get("model_name")),
                    ("model version", lineage.get("model_version")),
                    ("code commit", lineage.get("code_commit")),
                    ("uncommitted changes (dirty)", lineage.get("code_dirty")),
                    ("features blob", lineage.get("features_hash")),
                    ("recorded", iso(lineage.get("created_ts"))),
                ]
            )
        )
        parts.append("<h3>Risk at decision time</h3>")
        snapshot = lineage.get("risk_snapshot") or {}
        parts.append(_pairs(sorted(snapshot.items())) if snapshot else '<p class="muted">none recorded</p>')
    else:
        parts.append('<p class="muted">no lineage recorded for this trade</p>')
    parts.append("<h2>Model</h2>")
    run = model.get("run")
    if run:
        registered = model.get("registered_model") or {}
        parts.append(
            _pairs(
                [
                    ("tracking URI", model.get("tracking_uri")),
                    ("registered model", registered.get("name")),
                    ("version", registered.get("version")),
                    ("run id", run.get("run_id")),
                    ("run name", run.get("run_name")),
                    ("experiment", run.get("experiment_id")),
                    ("status", run.get("status")),
                    ("started", iso(run.get("start_time"))),
                    ("ended", iso(run.get("end_time"))),
                    ("git commit", run.get("git_commit")),
                    ("dataset digest", run.get("dataset_digest")),
                    ("artifact location", run.get("artifact_uri")),
                ]
            )
        )
        parts.append("<h3>Parameters</h3>" + _pairs(sorted((run.get("params") or {}).items())))
        parts.append("<h3>Metrics</h3>" + _pairs(sorted((run.get("metrics") or {}).items())))
        datasets = run.get("dataset_inputs") or []
        parts.append("<h3>Training data</h3>" + _table(("name", "digest", "source_type", "source"), datasets))
    else:
        parts.append(f'<p class="muted">{_text(model.get("note") or "no model")}</p>')
    parts.append("<h2>Features at decision time</h2>")
    if isinstance(features, Mapping):
        vector = features.get("features")
        if isinstance(vector, Mapping):
            parts.append(_pairs(sorted(vector.items())))
        rest = {k: v for k, v in features.items() if k not in ("features", "window")}
        if rest:
            parts.append(_pairs(sorted(rest.items())))
        window = features.get("window")
        if isinstance(window, Mapping):
            sizes = ", ".join(
                f"{escape(str(k))} ({len(v) if isinstance(v, list) else 1})" for k, v in window.items()
            )
            parts.append(f"<p>Raw input window: {sizes} — in the blob file.</p>")
    elif ids.get("features_hash"):
        parts.append("<p>See the blob file.</p>")
    else:
        parts.append('<p class="muted">no features blob recorded</p>')
    parts.append("<h2>Ids and hashes</h2>")
    parts.append(_pairs(sorted(ids.items())))
    head = manifest.get("audit_chain_head")
    if head:
        parts.append(
            _pairs(
                [("audit log head id", head.get("last_id")), ("audit log head hash", head.get("last_hash"))]
            )
        )
    parts.append("<h3>Files (SHA-256)</h3>")
    parts.append(
        _table(("file", "sha256"), [{"file": k, "sha256": v} for k, v in sorted(file_hashes.items())])
    )
    parts.append("<p class=muted>This page and these files are hashed in manifest.json.</p></body></html>\n")
    return "\n".join(parts)
