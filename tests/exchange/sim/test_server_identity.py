"""What a ledger needs to tell one venue and account from another: globally unique execution ids,
the simulator instance on every reply (X-Sim-Instance), the account's UID from query-api."""

import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pybit.unified_trading import HTTP

from methtrader.data import gbm_bars, resolve_bars
from methtrader.engine.backtest import run_backtest
from methtrader.exchange.sim.keys import KeyStore, add_key
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.server import INSTANCE_HEADER
from methtrader.exchange.sim.venue import SimExchange
from methtrader.model.instrument import generic_perpetual
from methtrader.strategies import SmaCross

MARKET = {"category": "linear", "symbol": "BTCUSDT", "orderType": "Market", "qty": "0.01"}


def _exchange(state: Path) -> SimExchange:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    return SimExchange(series, instrument, state_dir=state, speed=0, cash=Decimal(100_000))


def test_two_simulator_sessions_issue_disjoint_uuid_exec_ids(tmp_path: Path) -> None:
    """Each session used to number its fills from E1: a second one collided in the ledger."""
    _, _, uid = add_key(tmp_path)  # the same account, as a key kept in the state dir
    sessions = []
    for _ in range(2):
        exchange = _exchange(tmp_path)
        exchange.create_order(uid, {**MARKET, "side": "Buy"})
        exchange.create_order(uid, {**MARKET, "side": "Sell"})
        exchange.step()
        sessions.append([f.exec_id for f in exchange.accounts[uid].engine.fills])
    first, second = sessions
    assert len(first) == len(second) == 2
    assert not set(first) & set(second)
    assert all(uuid.UUID(exec_id).version == 4 for exec_id in first + second)


def test_a_backtest_twice_gives_the_same_exec_ids() -> None:
    series = gbm_bars(2_000, seed=7, symbol="SYNTHUSDT")

    def exec_ids() -> list[str]:
        strategy = SmaCross(fast=5, slow=20, qty=Decimal(1))
        return [f.exec_id for f in run_backtest(strategy, [(series, generic_perpetual("SYNTHUSDT"))]).fills]

    runs = [exec_ids(), exec_ids()]
    assert len(runs[0]) > 10
    assert runs[0] == runs[1] == [f"E{n}" for n in range(1, len(runs[0]) + 1)]


def test_every_reply_names_the_simulator_instance(tmp_path: Path) -> None:
    exchange, other = _exchange(tmp_path), _exchange(tmp_path)
    assert exchange.instance_id != other.instance_id
    assert len(exchange.instance_id) == 32 and uuid.UUID(hex=exchange.instance_id).version == 4
    key, secret, _ = exchange.add_key()
    with BackgroundServer(exchange) as srv, BackgroundServer(other) as other_srv:
        replies = [
            httpx.get(f"{srv.url}/v5/market/time"),  # public
            httpx.get(f"{srv.url}/v5/market/kline", params={"symbol": "BTCUSDT", "interval": "7"}),  # 10001
            httpx.get(f"{srv.url}/v5/account/wallet-balance?accountType=UNIFIED"),  # 401
            httpx.get(f"{srv.url}/v5/no/such/path"),  # 404
        ]
        assert [r.status_code for r in replies] == [200, 200, 401, 404]
        assert replies[1].json()["retCode"] == 10001
        assert all(r.headers[INSTANCE_HEADER] == exchange.instance_id for r in replies)
        session = HTTP(api_key=key, api_secret=secret, return_response_headers=True)
        session.endpoint = srv.url
        reply, _, headers = session.get_wallet_balance(accountType="UNIFIED")  # private, signed
        assert reply["retCode"] == 0 and headers[INSTANCE_HEADER] == exchange.instance_id
        other_reply = httpx.get(f"{other_srv.url}/v5/market/time")
        assert other_reply.headers[INSTANCE_HEADER] == other.instance_id


def test_query_api_gives_the_uid_as_user_id_and_a_stable_key_id(tmp_path: Path) -> None:
    exchange = _exchange(tmp_path)
    key, secret, uid = exchange.add_key()
    second_key, second_secret, _ = exchange.add_key(uid)  # a second key on the same account

    def info(srv: BackgroundServer, api_key: str, api_secret: str) -> dict[str, object]:
        session = HTTP(api_key=api_key, api_secret=api_secret)
        session.endpoint = srv.url
        return session.get_api_key_information()["result"]  # type: ignore[no-any-return]

    with BackgroundServer(exchange) as srv:
        first, second = info(srv, key, secret), info(srv, second_key, second_secret)
    assert first["userID"] == second["userID"] == int(uid)
    assert isinstance(first["id"], str) and first["id"].isdigit()
    assert first["id"] != second["id"] and first["id"] != uid
    with BackgroundServer(_exchange(tmp_path)) as restarted:  # a new process on the same keys
        assert info(restarted, key, secret)["id"] == first["id"]


def test_a_uid_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="UID is a number"):
        add_key(tmp_path, "alice")
    (tmp_path / "keys.json").write_text('{"keys": [{"api_key": "k", "api_secret": "s", "uid": "bob"}]}')
    with pytest.raises(ValueError, match="is not a number"):
        KeyStore(tmp_path).get("k")
