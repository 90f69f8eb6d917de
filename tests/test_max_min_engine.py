"""The engine's max-min filling (``engine.max_min_rates``, ``links::max_min``) returns exactly
the reference model's bits (``max_min_reference``, the Python algorithm the golden figures were
recorded with), on random inputs full of ties: equal capacities, equal demands, demands equal to
fair shares, background-only links, one flow per link, many links per path."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import max_min_reference as ref
from vssim import engine
from vssim.errors import InvalidArgumentError
from vssim.scale.fair_share_links import max_min_rates

LINKS = [f"l{i}" for i in range(7)]

#: Few distinct values, so ties are common: capacities and demands that divide evenly, a demand
#: equal to a link's fair share, and odd ones.
_values = st.one_of(
    st.sampled_from([1e3, 2e3, 3e3, 1e6, 1.5e6, 1e9, 8e9, 1e9 / 3, 0.1, 7.0]),
    st.floats(1e-3, 1e12, allow_nan=False, allow_infinity=False),
)

cases = st.tuples(
    st.lists(_values, min_size=len(LINKS), max_size=len(LINKS)).map(
        lambda caps: dict(zip(LINKS, caps, strict=True))
    ),
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(LINKS), min_size=1, max_size=5, unique=True).map(tuple),
            st.one_of(st.integers(1, 4), st.integers(1, 10**6)),
        ),
        max_size=14,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(LINKS), _values, st.one_of(st.integers(1, 3), st.integers(1, 10**5))
        ),
        max_size=14,
    ),
)


def bits(xs: list[float]) -> list[bytes]:
    """Each float's IEEE bytes: equality of bits, not of values (0.0 vs -0.0, NaN)."""
    return [struct.pack("<d", x) for x in xs]


@settings(max_examples=3000, deadline=None)
@given(cases)
def test_engine_matches_the_reference_bit_for_bit(case: Any) -> None:
    capacity, classes, background = case
    want = ref.max_min_rates(capacity, classes, background)
    got = max_min_rates(capacity, classes, background)
    assert bits(got[0]) == bits(want[0])
    assert bits(got[1]) == bits(want[1])


@settings(max_examples=500, deadline=None)
@given(cases)
def test_background_only_links_match_the_reference(case: Any) -> None:
    capacity, _, background = case
    want = ref.max_min_rates(capacity, [], background)
    got = max_min_rates(capacity, [], background)
    assert got[0] == []
    assert bits(got[1]) == bits(want[1])


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.tuples(_values, st.one_of(st.integers(1, 3), st.integers(1, 10**5))), max_size=12),
    st.floats(1.0 - 1e-6, 1.0 + 1e-6) | st.floats(0.3, 3.0),
)
def test_demands_that_fit_are_what_the_engine_gives(
    groups: list[tuple[float, int]], room: float
) -> None:
    """The links' shortcut for a transfer-free link (``links::demands_if_they_fit``, which
    ``links::FairShare`` takes): where it answers, it is the engine's filling to the bit
    (capacities from just above the total demand, where the margin refuses, to three times it,
    and below it: the filling shares)."""
    background = [(0, d, n) for d, n in groups]
    capacity = max(sum(d * n for d, n in groups) * room, 1e-3)
    got = engine.demands_if_they_fit(capacity, background)
    _, want = engine.max_min_rates([capacity], [], background)
    if got is not None:
        assert bits(got) == bits(want)
    else:
        assert capacity <= sum(d * n for d, n in groups) * (1 + 1e-8)


def test_a_known_allocation() -> None:
    """Two transfers over target and csv, one over csv alone, background on both: the numbers
    worked by hand, so the comparison above is not of two wrong answers."""
    capacity = {"target": 200.0, "csv": 400.0, "nic": 50.0}
    classes = [(("target", "csv"), 2), (("csv",), 1)]
    background = [("csv", 10.0, 4), ("nic", 20.0, 1), ("nic", 40.0, 1)]
    rates, bg = max_min_rates(capacity, classes, background)
    # csv: 4 flows at their 10 leave 360; the pair is held to 100 by the target, the third
    # takes 160; nic: 20 has its demand, 40 gets the 30 left.
    assert rates == [100.0, 160.0]
    assert bg == [10.0, 20.0, 30.0]
    assert ref.max_min_rates(capacity, classes, background) == (rates, bg)


@pytest.mark.parametrize(
    ("capacity", "classes", "background", "says"),
    [
        ([0.0], [((0,), 1)], [], "capacity"),
        ([float("inf")], [((0,), 1)], [], "capacity"),
        ([1.0], [((1,), 1)], [], "link 1: expected a link index below 1"),
        ([1.0], [((), 1)], [], "empty path"),
        ([1.0], [((0,), 0)], [], "0 transfers"),
        ([1.0], [], [(0, float("nan"), 1)], "demand nan"),
        ([1.0], [], [(0, -1.0, 1)], "demand -1"),
        ([1.0], [], [(0, 1.0, 0)], "0 flows"),
        ([1.0], [], [(2, 1.0, 1)], "group 0: link 2"),
    ],
)
def test_bad_input_is_refused_with_what_was_wrong(
    capacity: list[float], classes: Any, background: Any, says: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="(?i)" + says):
        engine.max_min_rates(capacity, classes, background)
