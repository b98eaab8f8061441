"""Column types that keep money exact on both backends, and the canonical JSON the ledger stores.

`Money` is NUMERIC(38, 18) on PostgreSQL and the decimal's text on SQLite: SQLite's NUMERIC affinity
would turn "0.1" into a binary float, so there the exact string is stored and parsed back.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from sqlalchemy import JSON, Dialect, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_PRECISION = 38
MONEY_SCALE = 18


class Money(TypeDecorator[Decimal]):
    """An exact `Decimal`: NUMERIC(38, 18) on PostgreSQL, its canonical text on SQLite."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = money_value(value)
        if dialect.name == "sqlite":
            return decimal_text(number)
        return number

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        return normalised(number)


def money_value(value: Any) -> Decimal:
    """The exact Decimal a money column stores: at most 18 decimals, rounded half away from zero as
    PostgreSQL's NUMERIC(38, 18) does, on both backends (so a row reads back as it was hashed)."""
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"money must be finite, not {number}")
    if number.as_tuple().exponent < -MONEY_SCALE:  # type: ignore[operator]
        number = number.quantize(_SCALE, context=_ROUNDING)
    return number


_SCALE = Decimal(1).scaleb(-MONEY_SCALE)
_ROUNDING = Context(prec=2 * MONEY_PRECISION, rounding=ROUND_HALF_UP)


def decimal_text(number: Decimal) -> str:
    """Plain positional notation, no exponent, no trailing zeros: 1E+2 -> "100", 0.50 -> "0.5".

    Done on the text, not with Decimal.normalize(), which rounds to the context's 28 digits."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def normalised(number: Decimal) -> Decimal:
    """The same value without trailing zeros (PostgreSQL pads to the column's scale); exact."""
    return Decimal(decimal_text(number))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, decimals as strings: one text per value, for hashing."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


# A JSON document column: JSONB on PostgreSQL (indexable), JSON text on SQLite.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")
