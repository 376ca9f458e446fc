"""LimitChecker.check, which walks a batch run by run, against the per-sample reading of
its rules (the implementation it replaced, kept here as the reference): the same levels,
and the same state, pending level and run length after every batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from unittest.mock import patch

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.monitoring import limits as limits_module
from control_center.monitoring.limits import (
    OK,
    RED_HIGH,
    RED_LOW,
    YELLOW_HIGH,
    YELLOW_LOW,
    LimitChecker,
    _bounds,
    _held_levels,
    _levels,
)
from control_center.telemetry.tmdb import Limits

_RANK = (0, 1, 1, 2, 2)
_HIGH = (False, False, True, False, True)


@dataclass
class Reference:
    """The checker as it was: one Python step per sample near a limit."""

    limit_sets: tuple[Limits, ...]
    persistence: int
    deadband: float
    state: int = OK
    pending: int = OK
    run: int = 0

    def check(self, v: npt.NDArray[np.float64], idx: npt.NDArray[np.intp] | None
              ) -> list[int]:
        n = v.shape[0]
        b = _bounds(self.limit_sets)[np.zeros(n, dtype=np.intp) if idx is None else idx]
        yl, yh, rl, rh = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        raw = _levels(v, yl, yh, rl, rh)
        d = self.deadband
        if d > 0:
            high_t = _held_levels(v, yl, yh, rl, rh, d, high=True)
            low_t = _held_levels(v, yl, yh, rl, rh, d, high=False)
        else:
            high_t = low_t = raw
        out = []
        state, pending, run = self.state, self.pending, self.run
        for x, r, ht, lt in zip(v.tolist(), raw.tolist(), high_t.tolist(), low_t.tolist(),
                                strict=True):
            if math.isnan(x):
                out.append(state)
                continue
            level = r
            if state != OK and _RANK[r] < _RANK[state]:
                tight = ht if _HIGH[state] else lt
                level = tight if _RANK[tight] < _RANK[state] else state
            if level == state:
                run = 0
            else:
                if level == pending and run:
                    run += 1
                else:
                    pending, run = level, 1
                if run >= self.persistence:
                    state, run = level, 0
            out.append(state)
        self.state, self.pending, self.run = state, pending, run
        return out


_limit = st.one_of(st.none(), st.sampled_from([-30.0, -15.0, -10.0, 0.0, 10.0, 15.0, 30.0]))
_limits = st.builds(Limits, yellow_low=_limit, yellow_high=_limit, red_low=_limit,
                    red_high=_limit)


def _near_limits(sets: list[Limits], deadband: float) -> st.SearchStrategy[float]:
    """Values on, just inside, just outside and a deadband away from every limit, plus
    NaN, infinities and anything."""
    edges = {0.0}
    for limits in sets:
        for limit in (limits.yellow_low, limits.yellow_high, limits.red_low,
                      limits.red_high):
            if limit is not None:
                for delta in (0.0, 0.01, deadband, deadband + 0.01, 2 * deadband):
                    edges.update((limit - delta, limit + delta))
    return st.one_of(st.sampled_from(sorted(edges)), st.just(math.nan),
                     st.sampled_from([math.inf, -math.inf]),
                     st.floats(-40.0, 40.0, allow_nan=False))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Limits], int, float, list[tuple[list[float],
                                                                             list[int] | None]]]:
    sets = draw(st.lists(_limits, min_size=1, max_size=3))
    persistence = draw(st.sampled_from([1, 1, 2, 3, 5]))
    deadband = draw(st.sampled_from([0.0, 0.0, 0.5, 1.0, 5.0]))
    value = _near_limits(sets, deadband)
    # Runs of one value make long runs (persistence reached), single draws noise.
    series = draw(st.lists(st.tuples(value, st.integers(1, 7)), max_size=40))
    values = [x for x, count in series for _ in range(count)]
    with_sets = draw(st.booleans())
    index = [draw(st.integers(0, len(sets) - 1)) for _ in values] if with_sets else None
    # Cut into batches: the state must carry over from one check to the next.
    cuts = sorted(draw(st.lists(st.integers(0, len(values)), max_size=4)))
    batches = []
    for start, end in zip([0, *cuts], [*cuts, len(values)], strict=True):
        batches.append((values[start:end], None if index is None else index[start:end]))
    return sets, persistence, deadband, batches


def _compare(sets: list[Limits], persistence: int, deadband: float,
             batches: list[tuple[list[float], list[int] | None]]) -> list[int]:
    checker = LimitChecker(sets, persistence=persistence, deadband=deadband)
    reference = Reference(tuple(sets), persistence, deadband)
    seen: list[int] = []
    for values, index in batches:
        v = np.array(values, dtype=np.float64)
        idx = None if index is None else np.array(index, dtype=np.intp)
        got = checker.check(v, idx)
        expected = reference.check(v, idx)
        assert got.dtype == np.int8
        assert got.tolist() == expected
        assert (checker.state, checker._pending, checker._run) == \
            (reference.state, reference.pending, reference.run)
        seen.extend(expected)
    return seen


@contextmanager
def walked_from(samples: int) -> Iterator[None]:
    """Batches of more than ``samples`` samples walked run by run (fewer are stepped)."""
    with patch.object(limits_module, "_STEP_BELOW_RAW", samples), \
            patch.object(limits_module, "_STEP_BELOW_DEADBAND", samples):
        yield


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_same_levels_and_state_as_the_per_sample_rules(
        scenario: tuple[list[Limits], int, float, list[tuple[list[float], list[int] | None]]]
) -> None:
    with walked_from(0):  # every batch run by run
        _compare(*scenario)
    _compare(*scenario)  # as shipped: short batches stepped


@pytest.mark.parametrize("dense_after", [0, 32, 10**9],
                         ids=["stepped at once", "as shipped", "never stepped"])
def test_long_random_series_with_every_feature(dense_after: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Many changes of level in one batch, with NaN gaps, two limit sets and batches of
    uneven size: every level is reached and the state carries over. With a deadband the
    walk goes run by run until changes come every few samples, then sample by sample:
    both ways, and the switch, are compared."""
    monkeypatch.setattr(limits_module, "_DENSE_CHANGES", dense_after)
    monkeypatch.setattr(limits_module, "_STEP_BELOW_DEADBAND", 0)
    monkeypatch.setattr(limits_module, "_STEP_BELOW_RAW", 0)
    rng = np.random.default_rng(11)
    sets = [Limits(yellow_low=-15.0, yellow_high=15.0, red_low=-30.0, red_high=30.0),
            Limits(yellow_low=-10.0, yellow_high=10.0, red_low=-20.0, red_high=20.0)]
    values = np.repeat(rng.normal(0.0, 18.0, 3000), rng.integers(1, 6, 3000))
    values[rng.random(values.size) < 0.05] = math.nan
    index = (np.arange(values.size) // 500) % 2
    cuts = np.sort(rng.integers(0, values.size, 6)).tolist()
    for persistence in (1, 3):
        for deadband in (0.0, 2.0):
            batches = [(values[a:b].tolist(), index[a:b].tolist())
                       for a, b in zip([0, *cuts], [*cuts, values.size], strict=True)]
            seen = _compare(sets, persistence, deadband, batches)
            assert set(seen) == {OK, YELLOW_LOW, YELLOW_HIGH, RED_LOW, RED_HIGH}


def test_deadband_hysteresis_in_one_batch() -> None:
    """A value hovering on a limit with a deadband changes the level once each way."""
    limits = Limits(yellow_high=33.6)
    values = [30.0, 34.0, 33.5, 33.4, 33.6, 33.39, 33.5, 34.0, 30.0]
    checker = LimitChecker([limits], deadband=0.2)
    assert checker.check(np.array(values)).tolist() == [
        OK, YELLOW_HIGH, YELLOW_HIGH, YELLOW_HIGH, YELLOW_HIGH, OK, OK, YELLOW_HIGH, OK]
    assert _compare([limits], 1, 0.2, [(values, None)])
    assert _compare([limits], 2, 0.2, [(values[:4], None), (values[4:], None)])
