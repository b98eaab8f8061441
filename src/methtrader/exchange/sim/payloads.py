"""Bybit V5 result objects built from the matching engine's state; every number is a string."""

from dataclasses import dataclass
from decimal import Decimal

from methtrader.exchange.sim.matching import MatchingEngine
from methtrader.model import Fill, Instrument, Order, OrderStatus, OrderType, TimeInForce
from methtrader.model.instrument import to_decimal

ZERO = Decimal(0)
POST_ONLY_TAKE = "post_only_would_take"


def fmt(value: object) -> str:
    """A number as Bybit writes it: plain decimal notation, no exponent, no trailing zeros."""
    if value is None:
        return ""
    d = value if isinstance(value, Decimal) else to_decimal(value)
    if d == 0:
        return "0"
    text = format(d.normalize(), "f")
    return text


def fmt_step(value: Decimal, step: Decimal) -> str:
    """A number padded to the decimals of `step` (prices to the tick, qty to the qty step)."""
    exp = step.normalize().as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return f"{value:.{places}f}"


@dataclass(slots=True)
class OrderMeta:
    """What Bybit reports about an order beyond the engine's `Order`: its ids."""

    order_id: str
    order_link_id: str


def instrument_info(inst: Instrument, launch_ms: int) -> dict[str, object]:
    tick = inst.tick_size
    exp = tick.as_tuple().exponent
    price_scale = -exp if isinstance(exp, int) and exp < 0 else 0
    return {
        "symbol": inst.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": inst.base_coin,
        "quoteCoin": inst.quote_coin,
        "settleCoin": inst.quote_coin,
        "launchTime": str(launch_ms),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(price_scale),
        "leverageFilter": {
            "minLeverage": "1",
            "maxLeverage": fmt_step(inst.max_leverage, Decimal("0.01")),
            "leverageStep": "0.01",
        },
        "priceFilter": {
            "minPrice": str(tick),
            "maxPrice": fmt_step(tick * 19_999_998, tick),
            "tickSize": str(tick),
        },
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": str(inst.min_qty),
            "qtyStep": str(inst.qty_step),
            "postOnlyMaxOrderQty": "1190.000",
            "maxMktOrderQty": "119.000",
            "minNotionalValue": fmt(inst.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoinType": "",
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
        "displayName": "",
    }


def order_payload(order: Order, meta: OrderMeta, inst: Instrument | None) -> dict[str, object]:
    status = str(order.status)
    reject_reason = "EC_NoError"
    if order.status is OrderStatus.REJECTED and order.reject_reason == POST_ONLY_TAKE:
        status, reject_reason = "Cancelled", "EC_PostOnlyWillTakeLiquidity"
    tif = "IOC" if order.type is OrderType.MARKET else str(order.tif)
    price = order.price if order.price is not None else ZERO
    avg = order.avg_price
    leaves = order.leaves_qty if order.status.is_open else ZERO
    tick = inst.tick_size if inst else Decimal("0.01")
    step = inst.qty_step if inst else Decimal("0.001")
    return {
        "orderId": meta.order_id,
        "orderLinkId": meta.order_link_id,
        "blockTradeId": "",
        "symbol": order.symbol,
        "price": fmt_step(price, tick) if order.price is not None else "0",
        "qty": fmt_step(order.qty, step),
        "side": str(order.side),
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": status,
        "cancelType": "UNKNOWN" if status != "Cancelled" else "CancelByUser",
        "rejectReason": reject_reason,
        "avgPrice": fmt_step(avg, tick) if avg is not None else "",
        "leavesQty": fmt_step(leaves, step),
        "leavesValue": fmt(leaves * price),
        "cumExecQty": fmt_step(order.filled_qty, step),
        "cumExecValue": fmt(order.filled_value),
        "cumExecFee": fmt(order.fees),
        "timeInForce": tif,
        "orderType": str(order.type),
        "stopOrderType": "",
        "orderIv": "",
        "triggerPrice": "",
        "takeProfit": "",
        "stopLoss": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": "",
        "reduceOnly": order.reduce_only,
        "closeOnTrigger": False,
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "tpslMode": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "placeType": "",
        "createdTime": str(order.created_ts),
        "updatedTime": str(order.updated_ts),
    }


def execution_payload(
    fill: Fill, order: Order | None, meta: OrderMeta, inst: Instrument | None, seq: int
) -> dict[str, object]:
    tick = inst.tick_size if inst else Decimal("0.01")
    step = inst.qty_step if inst else Decimal("0.001")
    value = fill.qty * fill.price
    fee_rate = fill.fee / value if value else ZERO
    closed = ZERO
    before = fill.position_after - fill.signed_qty
    if before and (before > 0) != (fill.signed_qty > 0):
        closed = min(abs(before), fill.qty)
    return {
        "symbol": fill.symbol,
        "orderId": meta.order_id,
        "orderLinkId": meta.order_link_id,
        "side": str(fill.side),
        "orderPrice": fmt_step(order.price, tick) if order is not None and order.price is not None else "0",
        "orderQty": fmt_step(order.qty, step) if order is not None else fmt_step(fill.qty, step),
        "leavesQty": fmt_step(order.leaves_qty, step) if order is not None else "0",
        "createType": "CreateByUser" if not fill.is_liquidation else "CreateByLiq",
        "orderType": str(order.type) if order is not None else "Market",
        "stopOrderType": "",
        "execFee": fmt(fill.fee),
        "execId": fill.exec_id,
        "execPrice": fmt_step(fill.price, tick),
        "execQty": fmt_step(fill.qty, step),
        "execType": "BustTrade" if fill.is_liquidation else "Trade",
        "execValue": fmt(value),
        "execTime": str(fill.ts),
        "feeCurrency": "",
        "isMaker": fill.liquidity.value == "Maker",
        "feeRate": fmt(fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": fmt_step(fill.price, tick),
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": fmt_step(closed, step),
        "seq": seq,
    }


def _realised(engine: MatchingEngine, symbol: str) -> Decimal:
    pnl = sum((f.realised_pnl - f.fee for f in engine.fills if f.symbol == symbol), ZERO)
    return pnl - sum((p.amount for p in engine.funding if p.symbol == symbol), ZERO)


def position_payload(engine: MatchingEngine, symbol: str, now_ms: int, seq: int) -> dict[str, object]:
    inst = engine.instruments[symbol]
    pos = engine.account.positions.get(symbol)
    qty = pos.qty if pos is not None else ZERO
    mark = engine.mark(symbol) if symbol in engine.marks else ZERO
    notional = abs(qty) * mark
    side = "" if qty == 0 else ("Buy" if qty > 0 else "Sell")
    liq = ""
    if qty:
        trigger = engine.single_trigger
        if trigger is not None and trigger > 0:
            liq = fmt_step(inst.round_price(trigger), inst.tick_size)
    upl = pos.unrealised_pnl(mark) if pos is not None and qty else ZERO
    return {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": symbol,
        "side": side,
        "size": fmt_step(abs(qty), inst.qty_step) if qty else "0",
        "avgPrice": fmt(pos.avg_entry) if pos is not None and qty else "0",
        "positionValue": fmt(abs(pos.cost)) if pos is not None and qty else "0",
        "tradeMode": 0,
        "autoAddMargin": 0,
        "positionStatus": "Normal",
        "leverage": fmt(engine.leverage),
        "markPrice": fmt_step(mark, inst.tick_size),
        "liqPrice": liq,
        "bustPrice": "",
        "positionIM": fmt(notional / engine.leverage),
        "positionMM": fmt(notional * inst.maintenance_margin_rate),
        "positionBalance": fmt(notional / engine.leverage),
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "sessionAvgPrice": "",
        "delta": "",
        "gamma": "",
        "vega": "",
        "theta": "",
        "unrealisedPnl": fmt(upl),
        "curRealisedPnl": fmt(_realised(engine, symbol)),
        "cumRealisedPnl": fmt(_realised(engine, symbol)),
        "adlRankIndicator": 2 if qty else 0,
        "createdTime": str(now_ms),
        "updatedTime": str(now_ms),
        "seq": seq,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "tpslMode": "Full",
    }


def wallet_payload(engine: MatchingEngine) -> dict[str, object]:
    account = engine.account
    marks = {s: engine.mark(s) for s, p in account.positions.items() if p.qty}
    equity = account.equity(marks)
    upl = equity - account.wallet_balance
    im = account.initial_margin(marks)
    mm = account.maintenance_margin(marks, engine.instruments)
    order_im = ZERO
    for symbol, orders in engine.open_orders.items():
        for o in orders:
            if not o.reduce_only:
                price = o.price if o.price is not None else engine.mark(symbol)
                order_im += o.leaves_qty * price / engine.leverage
    available = engine.available_balance()
    realised = sum((f.realised_pnl - f.fee for f in engine.fills), ZERO) - account.funding_paid
    coin = {
        "coin": "USDT",
        "equity": fmt(equity),
        "usdValue": fmt(equity),
        "walletBalance": fmt(account.wallet_balance),
        "free": "",
        "locked": "0",
        "spotHedgingQty": "0",
        "borrowAmount": "0",
        "availableToWithdraw": fmt(max(available, ZERO)),
        "availableToBorrow": "",
        "accruedInterest": "0",
        "totalOrderIM": fmt(order_im),
        "totalPositionIM": fmt(im),
        "totalPositionMM": fmt(mm),
        "unrealisedPnl": fmt(upl),
        "cumRealisedPnl": fmt(realised),
        "bonus": "0",
        "marginCollateral": True,
        "collateralSwitch": True,
        "autoBorrowEnabled": False,
    }
    im_rate = (im + order_im) / equity if equity > 0 else ZERO
    mm_rate = mm / equity if equity > 0 else ZERO
    return {
        "accountType": "UNIFIED",
        "accountLTV": "0",
        "accountIMRate": fmt(im_rate.quantize(Decimal("0.0001"))),
        "accountMMRate": fmt(mm_rate.quantize(Decimal("0.0001"))),
        "totalEquity": fmt(equity),
        "totalWalletBalance": fmt(account.wallet_balance),
        "totalMarginBalance": fmt(equity),
        "totalAvailableBalance": fmt(max(available, ZERO)),
        "totalPerpUPL": fmt(upl),
        "totalInitialMargin": fmt(im + order_im),
        "totalMaintenanceMargin": fmt(mm),
        "coin": [coin],
    }


def is_limit_tif(value: str) -> TimeInForce | None:
    try:
        return TimeInForce(value)
    except ValueError:
        return None
