"""The bundle's HTML page escapes everything it shows and carries no script or external reference."""

from methtrader.audit.report import render_report


def test_values_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    page = render_report(
        manifest={"trade_id": evil, "schema_version": 1, "ids": {"trade_id": evil}, "timestamps": {}},
        order={
            "order": {"trade_id": evil, "reject_reason": evil},
            "events": [{"seq": 1, "payload": {"k": evil}}],
        },
        fills=[{"exec_id": evil, "qty": "1", "price": "2", "fee": "0", "ts": 0}],
        lineage={"strategy": evil, "params": {"p": evil}, "risk_snapshot": {"state": evil}},
        model={"run": None, "note": evil},
        features={"features": {evil: 1.0}, "window": {"close": [1.0, 2.0]}},
        file_hashes={evil: "0" * 64},
    )
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page
