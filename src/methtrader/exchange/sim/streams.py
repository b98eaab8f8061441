"""Bybit V5 WebSocket streams: `/v5/public/{channel}` (kline, tickers, publicTrade, orderbook,
synthesised from the replayed bars) and `/v5/private` (auth, then order, execution, position,
wallet). Ping/pong, acks and payloads follow Bybit's formats; the topic echoes what was subscribed.
Tickers, trades and the book follow the price along the live bar's path, on every move of it;
klines are the closed bars, pushed when a bar closes.
"""

import asyncio
import contextlib
import json
import threading
import uuid
import weakref
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from methtrader.exchange.sim import payloads
from methtrader.exchange.sim.auth import verify_ws
from methtrader.exchange.sim.market import INTERVALS, klines, quote, ticker
from methtrader.exchange.sim.venue import Event, SimExchange, now_ms
from methtrader.model import Fill, Order

PRIVATE_TOPICS = {"order", "execution", "position", "wallet"}
PRICE_TOPICS = ("tickers", "orderbook", "publicTrade")  # pushed again when the price moves
ORDERBOOK_DEPTHS = {"1", "50", "200", "500", "1000"}


def _private_base(topic: str) -> str | None:
    base = topic.split(".", 1)[0]
    return base if base in PRIVATE_TOPICS else None


class Connection:
    """One client socket: its subscriptions and an outbound queue fed from any thread."""

    def __init__(self, ws: WebSocket, ex: SimExchange, private: bool, channel: str) -> None:
        self.ws = ws
        self.ex = ex
        self.private = private
        self.channel = channel
        self.conn_id = str(uuid.uuid4())
        self.topics: set[str] = set()
        self.uid: str | None = None
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.seq = 0
        self.book_update = 0
        self.muted = False  # chaos hook: a half-open socket that says nothing, pongs included
        self.closing: asyncio.Future[None] | None = None

    def push(self, message: dict[str, Any]) -> None:
        if self.muted:
            return
        self.loop.call_soon_threadsafe(self.queue.put_nowait, json.dumps(message))

    # ------------------------------------------------------------------ public topics
    def _public_valid(self, topic: str) -> bool:
        parts = topic.split(".")
        symbols = self.ex.instruments if self.channel == "linear" else {}
        if len(parts) == 2 and parts[0] in ("tickers", "publicTrade"):
            return parts[1] in symbols
        if len(parts) == 3 and parts[0] == "kline":
            return parts[1] in INTERVALS and parts[2] in symbols
        if len(parts) == 3 and parts[0] == "orderbook":
            return parts[1] in ORDERBOOK_DEPTHS and parts[2] in symbols
        return False

    def public_message(self, topic: str) -> dict[str, Any] | None:
        """The current state of a public topic (call under the exchange lock)."""
        ex = self.ex
        parts = topic.split(".")
        inst = ex.instruments[parts[-1]]
        i = ex.index
        now = now_ms()
        price = ex.price_now()
        self.seq += 1
        if parts[0] == "tickers":
            data = ticker(ex.series, i, inst, ex.config.funding_rate, price)
            return {"topic": topic, "type": "snapshot", "data": data, "cs": self.seq, "ts": now}
        if parts[0] == "orderbook":
            bid, ask = quote(inst, price)
            self.book_update += 1
            step = inst.qty_step
            size = payloads.fmt_step(max(step, inst.round_qty(float(ex.series.volume[i]) / 100)), step)
            data = {
                "s": inst.symbol,
                "b": [[payloads.fmt_step(bid, inst.tick_size), size]],
                "a": [[payloads.fmt_step(ask, inst.tick_size), size]],
                "u": self.book_update,
                "seq": self.seq,
            }
            return {"topic": topic, "type": "snapshot", "ts": now, "data": data, "cts": now}
        if parts[0] == "publicTrade":
            close, open_ = price, ex.live_bar().open
            trade = {
                "T": now,
                "s": inst.symbol,
                "S": "Buy" if close >= open_ else "Sell",
                "v": payloads.fmt(max(inst.qty_step, inst.round_qty(float(ex.series.volume[i])))),
                "p": payloads.fmt_step(inst.round_price(close), inst.tick_size),
                "L": "PlusTick" if close >= open_ else "MinusTick",
                "i": str(uuid.uuid4()),
                "BT": False,
                "seq": self.seq,
            }
            return {"topic": topic, "type": "snapshot", "ts": now, "data": [trade]}
        if parts[0] == "kline":
            interval = parts[1]
            [row] = klines(ex.series, i, interval, ex.interval_ms, None, None, 1)
            iv = INTERVALS[interval]
            start = int(row[0])
            confirm = int(ex.series.ts[i]) + ex.interval_ms >= start + iv
            data = {
                "start": start,
                "end": start + iv - 1,
                "interval": interval,
                "open": row[1],
                "close": row[4],
                "high": row[2],
                "low": row[3],
                "volume": row[5],
                "turnover": row[6],
                "confirm": confirm,
                "timestamp": now,
            }
            return {"topic": topic, "type": "snapshot", "ts": now, "data": [data]}
        return None

    # ------------------------------------------------------------------ exchange events
    def on_event(self, event: Event) -> None:
        kind, uid, payload = event
        if kind in ("bar", "tick"):
            if not self.private:
                for topic in sorted(self.topics):
                    if kind == "tick" and topic.split(".", 1)[0] not in PRICE_TOPICS:
                        continue
                    message = self.public_message(topic)
                    if message is not None:
                        self.push(message)
            return
        if not self.private or uid is None or uid != self.uid:
            return
        topics = [t for t in self.topics if _private_base(t) == kind]
        if not topics:
            return
        data = self._private_data(kind, uid, payload)
        if not data:
            return
        for topic in topics:
            self.push({"id": str(uuid.uuid4()), "topic": topic, "creationTime": now_ms(), "data": data})

    def _private_data(self, kind: str, uid: str, payload: object) -> list[dict[str, Any]]:
        ex = self.ex
        account = ex.accounts.get(uid)
        if account is None:
            return []
        engine = account.engine
        rows: list[dict[str, Any]] = []
        if kind == "order":
            for order in payload:  # type: ignore[attr-defined]
                assert isinstance(order, Order)
                meta = account.meta_of(order.trade_id)
                rows.append(
                    {
                        "category": "linear",
                        **payloads.order_payload(order, meta, ex.instruments.get(order.symbol)),
                    }
                )
        elif kind == "execution":
            first = len(engine.fills) - len(payload) + 1  # type: ignore[arg-type]
            for seq, fill in enumerate(payload, first):  # type: ignore[arg-type]
                assert isinstance(fill, Fill)
                meta = account.meta_of(fill.trade_id)
                order = engine.orders.get(fill.trade_id)
                item = payloads.execution_payload(fill, order, meta, ex.instruments.get(fill.symbol), seq)
                rows.append({"category": "linear", **item})
        elif kind == "position":
            now = now_ms()
            for symbol in payload:  # type: ignore[attr-defined]
                rows.append(
                    {"category": "linear", **payloads.position_payload(engine, symbol, now, account.seq)}
                )
        elif kind == "wallet":
            rows.append(payloads.wallet_payload(engine))
        return rows

    # ------------------------------------------------------------------ client requests
    def handle(self, raw: str) -> list[dict[str, Any]]:
        try:
            request = json.loads(raw)
        except ValueError:
            return [
                {"success": False, "ret_msg": f"error:invalid op,request:{raw[:64]}", "conn_id": self.conn_id}
            ]
        if not isinstance(request, dict):
            return [{"success": False, "ret_msg": "error:invalid op", "conn_id": self.conn_id}]
        op = request.get("op")
        req_id = request.get("req_id", "")
        args = request.get("args") or []
        if op == "ping":
            if self.private:
                return [{"req_id": req_id, "op": "pong", "args": [str(now_ms())], "conn_id": self.conn_id}]
            return [
                {"success": True, "ret_msg": "pong", "conn_id": self.conn_id, "req_id": req_id, "op": "ping"}
            ]
        if op == "auth" and self.private:
            key = verify_ws(self.ex.keys, list(args), now_ms())
            if key is not None:
                self.uid = key.uid
                self.ex.account(key.uid)
            reply = {
                "success": key is not None,
                "ret_msg": "" if key else "Params Error",
                "op": "auth",
                "conn_id": self.conn_id,
            }
            if req_id:
                reply["req_id"] = req_id
            return [reply]
        if op in ("subscribe", "unsubscribe"):
            return self._subscribe(op, req_id, [str(a) for a in args])
        return [
            {
                "success": False,
                "ret_msg": f"error:handler not found,op:{op}",
                "conn_id": self.conn_id,
                "req_id": req_id,
                "op": op,
            }
        ]

    def _subscribe(self, op: str, req_id: str, topics: list[str]) -> list[dict[str, Any]]:
        ack = {"success": True, "ret_msg": "", "conn_id": self.conn_id, "req_id": req_id, "op": op}
        if self.private and self.uid is None:
            return [{**ack, "success": False, "ret_msg": "Request not authorized"}]
        bad = [t for t in topics if not (_private_base(t) if self.private else self._public_valid(t))]
        if bad:
            return [{**ack, "success": False, "ret_msg": f"error:handler not found,topic:{bad[0]}"}]
        out: list[dict[str, Any]] = [ack]
        if op == "unsubscribe":
            self.topics.difference_update(topics)
            return out
        with self.ex.lock:
            for topic in topics:
                self.topics.add(topic)
                if not self.private and topic.split(".")[0] in ("orderbook", "tickers"):
                    message = self.public_message(topic)
                    if message is not None:
                        out.append(message)
        return out

    # ------------------------------------------------------------------ socket loop
    async def serve(self) -> None:
        await self.ws.accept()
        self.ex.subscribe(self.on_event)
        writer = asyncio.create_task(self._write())
        try:
            while True:
                raw = await self.ws.receive_text()
                replies = self.handle(raw)
                delay = stream_chaos(self.ex).reply_delay_s
                if delay:  # a network's round trip, which loopback does not have
                    await asyncio.sleep(delay)
                for message in replies:
                    if not self.muted:
                        self.queue.put_nowait(json.dumps(message))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.ex.unsubscribe(self.on_event)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write(self) -> None:
        while True:
            text = await self.queue.get()
            await self.ws.send_text(text)

    def drop(self) -> None:
        """Close the socket from the server's side (call on the server's loop)."""
        self.muted = True
        self.closing = asyncio.ensure_future(self.ws.close(code=1001))


class StreamChaos:
    """Test and chaos hook for one exchange's WebSocket streams, callable from any thread:
    drop connections server-side, mute them (a silent, half-open socket) or refuse new ones.
    It changes nothing about the protocol while no fault is injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self.refused: set[str] = set()  # "private" and/or "public": handshakes answered with 403
        self.reply_delay_s = 0.0  # answers to requests (acks, pongs) wait this long: network latency

    def _track(self, conn: Connection) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def connections(self, private: bool | None = True) -> list[Connection]:
        with self._lock:
            return [c for c in self._connections if private is None or c.private == private]

    def drop(self, private: bool | None = True) -> int:
        """Close every open private (public, None: all) socket; returns how many."""
        found = self.connections(private)
        for conn in found:
            conn.loop.call_soon_threadsafe(conn.drop)
        return len(found)

    def drop_private(self) -> int:
        return self.drop(True)

    def mute(self, private: bool | None = True) -> int:
        """Open sockets stop sending anything (data, acks, pongs) but stay open."""
        found = self.connections(private)
        for conn in found:
            conn.muted = True
        return len(found)

    def refuse(self, private: bool = True, on: bool = True) -> None:
        """While on, new private (public) connections are refused at the handshake."""
        kind = "private" if private else "public"
        with self._lock:
            if on:
                self.refused.add(kind)
            else:
                self.refused.discard(kind)


_CHAOS: "weakref.WeakKeyDictionary[SimExchange, StreamChaos]" = weakref.WeakKeyDictionary()
_CHAOS_LOCK = threading.Lock()


def stream_chaos(exchange: SimExchange) -> StreamChaos:
    """The chaos hook of `exchange`'s streams (one per exchange)."""
    with _CHAOS_LOCK:
        hook = _CHAOS.get(exchange)
        if hook is None:
            hook = _CHAOS[exchange] = StreamChaos()
        return hook


def register_streams(app: FastAPI, exchange: SimExchange) -> None:
    chaos = stream_chaos(exchange)

    async def serve(ws: WebSocket, private: bool, channel: str) -> None:
        if ("private" if private else "public") in chaos.refused:
            await ws.close(code=1013)  # before accept: the handshake fails with HTTP 403
            return
        conn = Connection(ws, exchange, private, channel)
        chaos._track(conn)
        try:
            await conn.serve()
        finally:
            chaos._untrack(conn)

    @app.websocket("/v5/private")
    async def private_stream(ws: WebSocket) -> None:
        await serve(ws, True, "private")

    @app.websocket("/v5/public/{channel}")
    async def public_stream(ws: WebSocket, channel: str) -> None:
        await serve(ws, False, channel)
