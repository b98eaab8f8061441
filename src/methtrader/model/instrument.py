"""A linear USDT perpetual and the rounding/minimum rules every order must pass before the ledger."""

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal


class OrderRejected(ValueError):
    """An order broke an instrument or account rule; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def to_decimal(value: object) -> Decimal:
    """Exact Decimal of an int/str/Decimal; floats go through their shortest repr, not binary value."""
    kind = type(value)
    if kind is float:
        return Decimal(repr(value))
    if kind is Decimal:
        return value  # type: ignore[return-value]
    if isinstance(value, float):
        return Decimal(repr(float(value)))
    return Decimal(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Instrument:
    """Contract specification as Bybit's instruments-info reports it for category=linear."""

    symbol: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_leverage: Decimal
    maker_fee: Decimal
    taker_fee: Decimal
    maintenance_margin_rate: Decimal = Decimal("0.005")
    base_coin: str = "BTC"
    quote_coin: str = "USDT"

    def round_price(self, price: object) -> Decimal:
        """Nearest tick (half-even), as the exchange would accept it."""
        ticks = (to_decimal(price) / self.tick_size).to_integral_value(ROUND_HALF_EVEN)
        return ticks * self.tick_size

    def round_qty(self, qty: object) -> Decimal:
        """Round the magnitude down to the quantity step: never trade more than asked."""
        steps = (to_decimal(qty) / self.qty_step).to_integral_value(ROUND_DOWN)
        return steps * self.qty_step

    def check_order(self, qty: Decimal, price: Decimal, reduce_only: bool = False) -> None:
        """Raise OrderRejected when qty or notional is below the contract's minimums."""
        if qty <= 0:
            raise OrderRejected("qty_not_positive", f"qty {qty} after rounding to {self.qty_step}")
        if qty < self.min_qty:
            raise OrderRejected("qty_below_minimum", f"qty {qty} < min {self.min_qty}")
        if price <= 0:
            raise OrderRejected("price_not_positive", f"price {price}")
        if not reduce_only and qty * price < self.min_notional:
            raise OrderRejected("notional_below_minimum", f"{qty * price} < min {self.min_notional} USDT")


BTCUSDT = Instrument(
    symbol="BTCUSDT",
    tick_size=Decimal("0.10"),
    qty_step=Decimal("0.001"),
    min_qty=Decimal("0.001"),
    min_notional=Decimal("5"),
    max_leverage=Decimal("100"),
    maker_fee=Decimal("0.0002"),
    taker_fee=Decimal("0.00055"),
)


def generic_perpetual(symbol: str, base_coin: str | None = None) -> Instrument:
    """A linear perpetual with cent ticks for index or synthetic data that Bybit does not list."""
    return Instrument(
        symbol=symbol,
        tick_size=Decimal("0.01"),
        qty_step=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        min_notional=Decimal("5"),
        max_leverage=Decimal("50"),
        maker_fee=Decimal("0.0002"),
        taker_fee=Decimal("0.00055"),
        base_coin=base_coin or symbol.removesuffix("USDT"),
    )
