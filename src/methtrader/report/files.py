"""Write a backtest's evidence to disk: trades, fills and equity as CSV, a chart as PNG and a
self-contained HTML page, so a run can be audited without re-running it."""

import base64
import csv
import html
import io
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from methtrader.engine.result import BacktestResult
from methtrader.report.downsample import extreme_indices
from methtrader.report.isotime import iso_utc, iso_utc_array
from methtrader.report.render import format_value, label, stats_to_json
from methtrader.report.stats import drawdown_series
from methtrader.report.trades import round_trips

MAX_CHART_POINTS = 5000

TRADE_COLUMNS = (
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "qty",
    "entry_price",
    "exit_price",
    "pnl",
    "fees",
    "open",
)
FILL_COLUMNS = (
    "time",
    "ts_ms",
    "exec_id",
    "trade_id",
    "symbol",
    "side",
    "qty",
    "price",
    "fee",
    "liquidity",
    "realised_pnl",
    "position_after",
    "liquidation",
)
EQUITY_COLUMNS = ("time", "ts_ms", "equity", "drawdown", "gross_exposure")


def write_outputs(result: BacktestResult, stats: Mapping[str, object], out_dir: Path) -> dict[str, Path]:
    """Write trades.csv, fills.csv, equity.csv, stats.json, report.png and report.html.

    Creates `out_dir`; returns the paths keyed trades, fills, equity, json, png and html.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "trades": out_dir / "trades.csv",
        "fills": out_dir / "fills.csv",
        "equity": out_dir / "equity.csv",
        "json": out_dir / "stats.json",
        "png": out_dir / "report.png",
        "html": out_dir / "report.html",
    }
    _write_csv(paths["trades"], TRADE_COLUMNS, _trade_rows(result))
    _write_csv(paths["fills"], FILL_COLUMNS, _fill_rows(result))
    _write_csv(paths["equity"], EQUITY_COLUMNS, _equity_rows(result))
    paths["json"].write_text(stats_to_json(stats) + "\n", encoding="utf-8")
    png = _chart_png(result)
    paths["png"].write_bytes(png)
    page = _html_page(result, stats, png, {k: p.name for k, p in paths.items()})
    paths["html"].write_text(page, encoding="utf-8")
    return paths


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[Iterable[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _trade_rows(result: BacktestResult) -> Iterable[list[object]]:
    for trip in round_trips(result.fills):
        yield [
            trip.symbol,
            trip.side,
            iso_utc(trip.entry_ts),
            "" if trip.exit_ts is None else iso_utc(trip.exit_ts),
            trip.qty,
            trip.entry_price,
            "" if trip.exit_price is None else trip.exit_price,
            trip.pnl,
            trip.fees,
            trip.is_open,
        ]


def _fill_rows(result: BacktestResult) -> Iterable[list[object]]:
    for fill in result.fills:
        yield [
            iso_utc(fill.ts),
            fill.ts,
            fill.exec_id,
            fill.trade_id,
            fill.symbol,
            fill.side.value,
            fill.qty,
            fill.price,
            fill.fee,
            fill.liquidity.value,
            fill.realised_pnl,
            fill.position_after,
            fill.is_liquidation,
        ]


def _equity_rows(result: BacktestResult) -> Iterable[tuple[object, ...]]:
    ts = np.asarray(result.ts, dtype=np.int64)
    equity = np.asarray(result.equity, dtype=float)
    return zip(
        iso_utc_array(ts).tolist(),
        ts.tolist(),
        equity.tolist(),
        drawdown_series(equity).tolist(),
        np.asarray(result.gross_exposure, dtype=float).tolist(),
        strict=True,
    )


def _params_text(params: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def _chart_png(result: BacktestResult) -> bytes:
    """Equity over drawdown %, downsampled by per-bucket extremes so the deepest point survives."""
    ts = np.asarray(result.ts, dtype=np.int64)
    equity = np.asarray(result.equity, dtype=float)
    drawdown = drawdown_series(equity) * 100.0
    keep = extreme_indices([equity, drawdown], MAX_CHART_POINTS, keep_max=(True, False))
    when = ts[keep].astype("datetime64[ms]")

    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    title = result.strategy
    if result.params:
        title = f"{title} ({_params_text(result.params)})"
    fig.suptitle(textwrap.fill(title, 110), fontsize=11)
    top.plot(when, equity[keep], color="tab:blue", linewidth=1.0)
    top.set_ylabel("Equity")
    top.grid(alpha=0.3)
    bottom.fill_between(when, drawdown[keep], 0.0, color="tab:red", alpha=0.35, linewidth=0)
    bottom.plot(when, drawdown[keep], color="tab:red", linewidth=0.7)
    bottom.set_ylabel("Drawdown %")
    bottom.grid(alpha=0.3)
    if when.size:
        locator = AutoDateLocator()
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        top.text(0.5, 0.5, "no bars", ha="center", va="center", transform=top.transAxes)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { padding: 0.2rem 0.8rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
""".strip()


def _html_page(
    result: BacktestResult, stats: Mapping[str, object], png: bytes, files: Mapping[str, str]
) -> str:
    esc = html.escape
    metrics = "\n".join(
        f'<tr><th>{esc(label(key))}</th><td class="num">{esc(format_value(key, value))}</td></tr>'
        for key, value in stats.items()
    )
    params = "\n".join(
        f"<tr><th>{esc(str(key))}</th><td>{esc(str(value))}</td></tr>" for key, value in result.params.items()
    )
    links = "\n".join(
        f'<li><a href="{esc(name, quote=True)}">{esc(name)}</a></li>'
        for key, name in files.items()
        if key in ("trades", "fills", "equity", "json")
    )
    image = base64.b64encode(png).decode("ascii")
    title = f"Backtest report: {result.strategy}"
    symbols = ", ".join(result.symbols)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>
{_STYLE}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Symbols: {esc(symbols)}</p>
<img alt="Equity and drawdown" src="data:image/png;base64,{image}">
<h2>Metrics</h2>
<table>
{metrics}
</table>
<h2>Parameters</h2>
<table>
{params or "<tr><td>none</td></tr>"}
</table>
<h2>Data</h2>
<ul>
{links}
</ul>
</body>
</html>
"""
