"""Unit tests of control_center.monitoring.limits: raw levels, persistence, deadband, limit sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.monitoring.limits import (
    OK,
    RED_HIGH,
    RED_LOW,
    YELLOW_HIGH,
    YELLOW_LOW,
    LimitChecker,
    level_name,
    limit_value,
    raw_levels,
    severity,
    severity_rank,
)
from control_center.telemetry.tmdb import Limits

FULL = Limits(yellow_low=10.0, yellow_high=30.0, red_low=5.0, red_high=35.0)
BATTERY = Limits(yellow_low=20.0, yellow_high=33.6, red_low=15.0, red_high=35.0)


def levels(checker: LimitChecker, values: list[float],
           set_index: list[int] | None = None) -> list[int]:
    idx = None if set_index is None else np.array(set_index, dtype=np.int64)
    return [int(x) for x in checker.check(np.array(values, dtype=np.float64), idx)]


def changes(series: list[int], start: int = OK) -> int:
    return sum(1 for a, b in zip([start, *series], series, strict=False) if a != b)


# --------------------------------------------------------------------------- codes


def test_severity_names_and_ranks() -> None:
    assert [severity(x) for x in (OK, YELLOW_LOW, YELLOW_HIGH, RED_LOW, RED_HIGH)] == \
        ["none", "yellow", "yellow", "red", "red"]
    assert [severity_rank(x) for x in range(5)] == [0, 1, 1, 2, 2]
    assert level_name(RED_LOW) == "RED LOW"
    assert limit_value(BATTERY, RED_LOW) == 15.0
    assert limit_value(BATTERY, YELLOW_HIGH) == 33.6
    assert limit_value(BATTERY, OK) is None
    with pytest.raises(ValueError):
        severity(5)
    with pytest.raises(ValueError):
        severity(-1)


# --------------------------------------------------------------------------- raw levels


def test_raw_levels_bands_and_boundaries() -> None:
    values = np.array([0.0, 5.0, 7.0, 10.0, 20.0, 30.0, 32.0, 35.0, 40.0, -math.inf, math.inf])
    assert raw_levels(values, FULL).tolist() == [
        RED_LOW, YELLOW_LOW, YELLOW_LOW, OK, OK, OK, YELLOW_HIGH, YELLOW_HIGH, RED_HIGH,
        RED_LOW, RED_HIGH,
    ]
    assert raw_levels(values, FULL).dtype == np.int8


def test_raw_levels_nan_is_ok() -> None:
    assert raw_levels(np.array([math.nan, 100.0, math.nan]), FULL).tolist() == \
        [OK, RED_HIGH, OK]


def test_raw_levels_missing_sides() -> None:
    only_red_high = Limits(red_high=1.0)
    assert raw_levels(np.array([-1e300, 0.5, 1.0, 2.0]), only_red_high).tolist() == \
        [OK, OK, OK, RED_HIGH]
    only_yellow_low = Limits(yellow_low=0.0)
    assert raw_levels(np.array([-1.0, 0.0, 1e300]), only_yellow_low).tolist() == \
        [YELLOW_LOW, OK, OK]
    assert raw_levels(np.array([-1e300, 1e300]), Limits()).tolist() == [OK, OK]


def test_raw_levels_red_without_yellow_beats_nothing() -> None:
    # red inside yellow (odd but legal): red still wins where both are violated
    odd = Limits(yellow_high=10.0, red_high=5.0)
    assert raw_levels(np.array([4.0, 7.0, 12.0]), odd).tolist() == [OK, RED_HIGH, RED_HIGH]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
@settings(max_examples=100, deadline=None)
def test_raw_levels_matches_scalar_definition(values: list[float]) -> None:
    got = raw_levels(np.array(values, dtype=np.float64), FULL).tolist()
    expected = []
    for v in values:
        if v < 5.0:
            expected.append(RED_LOW)
        elif v > 35.0:
            expected.append(RED_HIGH)
        elif v < 10.0:
            expected.append(YELLOW_LOW)
        elif v > 30.0:
            expected.append(YELLOW_HIGH)
        else:
            expected.append(OK)  # NaN included
    assert got == expected


# --------------------------------------------------------------------------- checker


def test_checker_defaults_follow_raw_levels() -> None:
    checker = LimitChecker([FULL])
    assert checker.state == OK
    values = [20.0, 32.0, 40.0, 32.0, 20.0, 7.0, 0.0]
    assert levels(checker, values) == raw_levels(np.array(values), FULL).tolist()
    assert checker.state == RED_LOW


def test_persistence_n_minus_one_samples_change_nothing() -> None:
    checker = LimitChecker([FULL], persistence=3)
    assert levels(checker, [32.0, 32.0, 20.0]) == [OK, OK, OK]
    assert checker.state == OK


def test_persistence_n_samples_change_the_level() -> None:
    checker = LimitChecker([FULL], persistence=3)
    assert levels(checker, [32.0, 32.0, 32.0, 32.0]) == [OK, OK, YELLOW_HIGH, YELLOW_HIGH]
    # and back to OK needs 3 samples too
    assert levels(checker, [20.0, 20.0, 20.0]) == [YELLOW_HIGH, YELLOW_HIGH, OK]


def test_persistence_interrupted_run_changes_nothing() -> None:
    checker = LimitChecker([FULL], persistence=3)
    assert levels(checker, [32.0, 32.0, 20.0, 32.0, 32.0, 20.0]) == [OK] * 6
    # a run of mixed out-of-limit levels does not count either
    assert levels(checker, [32.0, 40.0, 32.0, 40.0, 32.0]) == [OK] * 5
    assert levels(checker, [40.0, 40.0, 40.0]) == [OK, OK, RED_HIGH]


def test_persistence_run_spans_batches() -> None:
    checker = LimitChecker([FULL], persistence=3)
    assert levels(checker, [32.0, 32.0]) == [OK, OK]
    assert levels(checker, [32.0]) == [YELLOW_HIGH]


def test_nan_holds_the_level_and_does_not_break_a_run() -> None:
    checker = LimitChecker([FULL], persistence=2)
    assert levels(checker, [math.nan, 40.0, math.nan, 40.0]) == [OK, OK, OK, RED_HIGH]
    assert levels(checker, [math.nan] * 5) == [RED_HIGH] * 5
    assert levels(checker, [20.0, math.nan, 20.0]) == [RED_HIGH, RED_HIGH, OK]


def test_deadband_example_from_the_spec() -> None:
    checker = LimitChecker([BATTERY], deadband=0.2)
    assert levels(checker, [33.7]) == [YELLOW_HIGH]
    assert levels(checker, [33.6, 33.5, 33.4]) == [YELLOW_HIGH] * 3  # not < 33.4
    assert levels(checker, [33.39]) == [OK]


def test_deadband_entering_needs_no_deadband() -> None:
    checker = LimitChecker([BATTERY], deadband=0.2)
    assert levels(checker, [33.61, 35.01, 14.99]) == [YELLOW_HIGH, RED_HIGH, RED_LOW]


def test_deadband_from_red_returns_through_yellow() -> None:
    checker = LimitChecker([BATTERY], deadband=0.2)
    assert levels(checker, [35.1, 34.9, 34.79, 33.5, 33.3]) == \
        [RED_HIGH, RED_HIGH, YELLOW_HIGH, YELLOW_HIGH, OK]
    checker = LimitChecker([BATTERY], deadband=0.2)
    assert levels(checker, [35.1, 33.5]) == [RED_HIGH, YELLOW_HIGH]  # within d of yellow
    assert levels(checker, [14.0, 15.1, 15.3, 19.9, 20.1, 20.3]) == \
        [RED_LOW, RED_LOW, YELLOW_LOW, YELLOW_LOW, YELLOW_LOW, OK]


def test_deadband_only_applies_on_the_side_of_the_level() -> None:
    checker = LimitChecker([BATTERY], deadband=0.2)
    # at RED_HIGH, a value just inside the yellow-low limit is plainly OK
    assert levels(checker, [40.0, 20.1]) == [RED_HIGH, OK]


def test_deadband_stops_flapping() -> None:
    rng = np.random.default_rng(7)
    noisy = 33.6 + rng.uniform(-0.15, 0.15, size=500)  # oscillates around yellow_high
    noisy[0] = 33.7
    plain = LimitChecker([BATTERY]).check(noisy).tolist()
    damped = LimitChecker([BATTERY], deadband=0.2).check(noisy).tolist()
    assert changes(plain) > 50
    assert changes(damped) == 1
    assert damped[-1] == YELLOW_HIGH
    # a clear return ends it
    checker = LimitChecker([BATTERY], deadband=0.2)
    out = levels(checker, [33.7, 33.5, 33.65, 33.45, 33.62, 33.0])
    assert out == [YELLOW_HIGH] * 5 + [OK]
    assert changes(out) == 2


def test_limit_sets_by_mode() -> None:
    safe = Limits(yellow_high=30.0, red_high=40.0)
    science = Limits(yellow_high=20.0, red_high=25.0)
    checker = LimitChecker([safe, science])
    assert levels(checker, [22.0, 22.0, 26.0, 26.0, 35.0, 35.0], [0, 1, 0, 1, 0, 1]) == \
        [OK, YELLOW_HIGH, OK, RED_HIGH, YELLOW_HIGH, RED_HIGH]
    assert levels(LimitChecker([safe, science]), [22.0, 26.0]) == [OK, OK]  # None = set 0


def test_limit_sets_with_deadband_use_the_sample_set() -> None:
    safe = Limits(yellow_high=30.0)
    science = Limits(yellow_high=20.0)
    checker = LimitChecker([safe, science], deadband=1.0)
    assert levels(checker, [21.0, 19.5, 18.9], [1, 1, 1]) == [YELLOW_HIGH, YELLOW_HIGH, OK]
    assert levels(checker, [21.0, 21.0], [1, 0]) == [YELLOW_HIGH, OK]


def test_checker_validation() -> None:
    with pytest.raises(ValueError):
        LimitChecker([])
    with pytest.raises(ValueError):
        LimitChecker([FULL], persistence=0)
    with pytest.raises(ValueError):
        LimitChecker([FULL], deadband=-1.0)
    with pytest.raises(ValueError):
        LimitChecker([FULL], deadband=math.nan)
    checker = LimitChecker([FULL, FULL])
    with pytest.raises(IndexError):
        checker.check(np.array([1.0]), np.array([2]))
    with pytest.raises(IndexError):
        checker.check(np.array([1.0]), np.array([-1]))
    with pytest.raises(ValueError):
        checker.check(np.array([1.0, 2.0]), np.array([0]))
    with pytest.raises(TypeError):
        checker.check(np.array([1.0]), np.array([0.5]))
    with pytest.raises(ValueError):
        checker.check(np.zeros((2, 2)))
    assert checker.check(np.array([])).tolist() == []
    assert checker.check(np.array([]), np.array([], dtype=np.int64)).tolist() == []


def test_reset() -> None:
    checker = LimitChecker([FULL], persistence=2)
    levels(checker, [40.0, 40.0, 20.0])
    assert checker.state == RED_HIGH
    checker.reset()
    assert checker.state == OK
    assert levels(checker, [20.0, 40.0]) == [OK, OK]


values_strategy = st.lists(
    st.one_of(st.floats(min_value=0.0, max_value=40.0), st.just(math.nan),
              st.sampled_from([5.0, 10.0, 30.0, 35.0, 29.9, 30.1])),
    max_size=60,
)


@given(values=values_strategy, data=st.data(),
       persistence=st.integers(min_value=1, max_value=4),
       deadband=st.sampled_from([0.0, 0.1, 0.5, 2.0]))
@settings(max_examples=200, deadline=None)
def test_batches_give_the_same_result_as_one_call(
        values: list[float], data: st.DataObject, persistence: int, deadband: float) -> None:
    other = Limits(yellow_low=12.0, yellow_high=25.0, red_high=31.0)
    set_index = data.draw(st.lists(st.integers(min_value=0, max_value=1),
                                   min_size=len(values), max_size=len(values)))
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(values)),
                                     max_size=5)))
    whole = LimitChecker([FULL, other], persistence=persistence, deadband=deadband)
    expected = levels(whole, values, set_index)
    split = LimitChecker([FULL, other], persistence=persistence, deadband=deadband)
    got: list[int] = []
    for start, stop in zip([0, *cuts], [*cuts, len(values)], strict=True):
        got += levels(split, values[start:stop], set_index[start:stop])
    assert got == expected
    assert split.state == whole.state
    assert (expected[-1] if expected else OK) == whole.state


@given(values=st.lists(st.floats(min_value=0.0, max_value=40.0), max_size=60))
@settings(max_examples=100, deadline=None)
def test_persistence_one_without_deadband_is_raw(values: list[float]) -> None:
    arr = np.array(values, dtype=np.float64)
    assert LimitChecker([FULL]).check(arr).tolist() == raw_levels(arr, FULL).tolist()
