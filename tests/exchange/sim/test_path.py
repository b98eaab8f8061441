"""The intrabar path: open → low → high → close for an up bar, open → high → low → close else."""

from hypothesis import given
from hypothesis import strategies as st

from methtrader.exchange.sim.matching import StepBar
from methtrader.exchange.sim.path import IntrabarPath


def test_an_up_bar_dips_first_and_a_down_bar_rallies_first() -> None:
    up = IntrabarPath(StepBar("X", 100.0, 112.0, 97.0, 110.0, 1.0))
    assert [up.price(f) for f in (0, 1 / 3, 2 / 3, 1)] == [100.0, 97.0, 112.0, 110.0]
    assert up.price(1 / 6) == 98.5  # half-way down the first leg
    down = IntrabarPath(StepBar("X", 100.0, 103.0, 90.0, 95.0, 1.0))
    assert [down.price(f) for f in (0, 1 / 3, 2 / 3, 1)] == [100.0, 103.0, 90.0, 95.0]
    so_far = up.traded(0.5)  # the low passed, half-way up to the high
    assert (so_far.open, so_far.low, so_far.high, so_far.close) == (100.0, 97.0, 104.5, 104.5)


bars = st.tuples(*[st.integers(1, 10_000)] * 4).map(
    lambda p: StepBar("X", p[0] / 100, max(p) / 100, min(p) / 100, p[3] / 100, 1.0)
)


@given(bar=bars, fractions=st.lists(st.floats(0, 1), min_size=1, max_size=8).map(sorted))
def test_the_range_traded_grows_inside_the_bar_to_all_of_it(bar: StepBar, fractions: list[float]) -> None:
    path = IntrabarPath(bar)
    low, high = bar.open, bar.open
    for f in fractions:
        traded = path.traded(f)
        assert bar.low <= traded.low <= traded.close <= traded.high <= bar.high
        assert traded.low <= low and traded.high >= high and traded.open == bar.open
        low, high = traded.low, traded.high
    end = path.traded(1.0)
    assert (end.low, end.high, end.close) == (bar.low, bar.high, bar.close)
