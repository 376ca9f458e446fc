"""Limit checking: raw yellow/red levels of samples, and a stateful checker with
persistence and deadband (hysteresis).

Level codes are small ints: ``OK`` 0, ``YELLOW_LOW`` 1, ``YELLOW_HIGH`` 2, ``RED_LOW`` 3,
``RED_HIGH`` 4. A sample is out of a limit only when strictly outside it (a value equal
to the limit is in limits); red beats yellow; NaN is never a violation.

``LimitChecker`` semantics, per sample, in order:

* **Raw level**: the level of the sample against the limit set selected for it
  (``set_index[i]`` picks one of ``limit_sets``, for mode-dependent limits; ``None``
  means set 0 for every sample).
* **Deadband** ``d``: when the checker is at a non-OK level, a sample whose raw level is
  less severe only counts as that less severe level if it is inside the less severe band
  by more than ``d`` (only the limits on the side of the current level count: high
  limits for ``*_HIGH``, low limits for ``*_LOW``). Example: at ``YELLOW_HIGH`` with
  ``yellow_high=33.6`` and ``d=0.2`` a value must be ``< 33.4`` to count as OK (33.4
  itself stays ``YELLOW_HIGH``); at ``RED_HIGH`` a value in ``[red_high - d, red_high]``
  still counts as ``RED_HIGH``. With ``d=0`` a value on the limit is back in limits.
  Entering an equally or more severe level needs no deadband.
* **Persistence** ``n``: the checker's level changes to a new level only after ``n``
  consecutive samples whose (deadband-adjusted) level equals that new level. A sample at
  the current level, or at a different new level, interrupts the run (a mixed run of
  ``YELLOW_HIGH`` and ``RED_HIGH`` samples therefore changes nothing until ``n`` equal
  ones follow each other).
* **NaN** samples are skipped: they hold the checker's level and neither advance nor
  interrupt a persistence run (a missing value is no evidence either way).

The whole state (level, pending level and its run length) persists across ``check()``
calls, so checking a series in batches gives the same result as checking it at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from control_center.telemetry.tmdb import Limits

OK, YELLOW_LOW, YELLOW_HIGH, RED_LOW, RED_HIGH = 0, 1, 2, 3, 4

LEVEL_NAMES: dict[int, str] = {
    OK: "OK", YELLOW_LOW: "YELLOW LOW", YELLOW_HIGH: "YELLOW HIGH",
    RED_LOW: "RED LOW", RED_HIGH: "RED HIGH",
}
_SEVERITY = ("none", "yellow", "yellow", "red", "red")
_RANK = (0, 1, 1, 2, 2)  # severity rank per level code
_HIGH = (False, False, True, False, True)  # level is on the high side

Levels = npt.NDArray[np.int8]
_Bound = npt.NDArray[np.float64] | float


def _check_level(level: int) -> int:
    if not 0 <= level <= RED_HIGH:
        raise ValueError(f"unknown limit level {level!r}")
    return level


def severity(level: int) -> str:
    """``"none"``, ``"yellow"`` or ``"red"`` for a level code."""
    return _SEVERITY[_check_level(level)]


def severity_rank(level: int) -> int:
    """0 for OK, 1 for yellow, 2 for red: comparable severities."""
    return _RANK[_check_level(level)]


def level_name(level: int) -> str:
    """``"OK"``, ``"YELLOW LOW"``, ... ``"RED HIGH"``."""
    return LEVEL_NAMES[_check_level(level)]


def limit_value(limits: Limits, level: int) -> float | None:
    """The limit a sample at ``level`` is beyond (``None`` for OK)."""
    return (None, limits.yellow_low, limits.yellow_high, limits.red_low,
            limits.red_high)[_check_level(level)]


def _bounds(limit_sets: Sequence[Limits]) -> npt.NDArray[np.float64]:
    """(k, 4) array of yellow_low, yellow_high, red_low, red_high; None -> -inf / +inf."""
    rows = [
        (-math.inf if s.yellow_low is None else s.yellow_low,
         math.inf if s.yellow_high is None else s.yellow_high,
         -math.inf if s.red_low is None else s.red_low,
         math.inf if s.red_high is None else s.red_high)
        for s in limit_sets
    ]
    return np.array(rows, dtype=np.float64).reshape(len(rows), 4)


def _levels(values: npt.NDArray[np.float64], yl: _Bound, yh: _Bound, rl: _Bound,
            rh: _Bound) -> Levels:
    out = np.zeros(values.shape, dtype=np.int8)
    out[values < yl] = YELLOW_LOW
    out[values > yh] = YELLOW_HIGH
    out[values < rl] = RED_LOW
    out[values > rh] = RED_HIGH
    return out  # NaN compares False everywhere: OK


def _held_levels(values: npt.NDArray[np.float64], yl: _Bound, yh: _Bound, rl: _Bound,
                 rh: _Bound, d: float, high: bool) -> Levels:
    """Levels with the limits of one side tightened by the deadband ``d``: a value within
    ``d`` of such a limit, or on it, still counts as beyond it (leaving a band needs a
    margin of more than ``d``). The other side keeps its plain limits."""
    out = np.zeros(values.shape, dtype=np.int8)
    if high:
        out[values < yl] = YELLOW_LOW
        out[(values >= yh - d) & np.isfinite(yh)] = YELLOW_HIGH
        out[values < rl] = RED_LOW
        out[(values >= rh - d) & np.isfinite(rh)] = RED_HIGH
    else:
        out[(values <= yl + d) & np.isfinite(yl)] = YELLOW_LOW
        out[values > yh] = YELLOW_HIGH
        out[(values <= rl + d) & np.isfinite(rl)] = RED_LOW
        out[values > rh] = RED_HIGH
    return out


def raw_levels(values: npt.ArrayLike, limits: Limits) -> Levels:
    """Level code (int8) of every sample against one limit set, vectorised.

    Strictly outside a limit is out (equal is in), red beats yellow, NaN is OK.
    """
    v = np.asarray(values, dtype=np.float64)
    yl, yh, rl, rh = (float(x) for x in _bounds([limits])[0])
    return _levels(v, yl, yh, rl, rh)


class LimitChecker:
    """Stateful limit checking with persistence, deadband and mode-dependent limit sets
    (see the module docstring for the exact semantics)."""

    def __init__(self, limit_sets: Sequence[Limits], *, persistence: int = 1,
                 deadband: float = 0.0) -> None:
        if len(limit_sets) == 0:
            raise ValueError("at least one limit set is needed")
        if isinstance(persistence, bool) or not isinstance(persistence, int) \
                or persistence < 1:
            raise ValueError(f"persistence must be an int >= 1, got {persistence!r}")
        if not math.isfinite(deadband) or deadband < 0:
            raise ValueError(f"deadband must be finite and >= 0, got {deadband!r}")
        self.limit_sets: tuple[Limits, ...] = tuple(limit_sets)
        self.persistence = persistence
        self.deadband = float(deadband)
        self._bounds = _bounds(self.limit_sets)
        self.state: int = OK
        self._pending: int = OK  # level of the current persistence run
        self._run: int = 0  # its length so far (0: no run)

    def reset(self) -> None:
        """Back to OK with no pending run."""
        self.state, self._pending, self._run = OK, OK, 0

    def check(self, values: npt.ArrayLike,
              set_index: npt.ArrayLike | None = None) -> Levels:
        """The checker's level (int8) after each sample, persistence and deadband applied.

        ``set_index`` gives, per sample, the index into ``limit_sets`` of the limits that
        apply to it (``None``: set 0).
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {v.shape}")
        n = v.shape[0]
        idx = None
        if set_index is not None:
            idx = np.asarray(set_index)
            if idx.shape != v.shape:
                raise ValueError(f"set_index shape {idx.shape} != values shape {v.shape}")
            if n and not np.issubdtype(idx.dtype, np.integer):
                raise TypeError(f"set_index must be integers, got {idx.dtype}")
            if n and (idx.min() < 0 or idx.max() >= len(self.limit_sets)):
                raise IndexError(f"set_index out of range 0..{len(self.limit_sets) - 1}")
        if idx is None or len(self.limit_sets) == 1:
            # One limit set for every sample: its limits as plain numbers, no per-sample
            # copy of them.
            yl, yh, rl, rh = (float(x) for x in self._bounds[0])
            bounds: tuple[_Bound, _Bound, _Bound, _Bound] = (yl, yh, rl, rh)
        else:
            b = self._bounds[idx]
            bounds = (b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        raw = _levels(v, *bounds)
        if self.state == OK and not raw.any():
            # The nominal case: in limits before and throughout, so every sample only
            # resets a pending run (NaN samples leave it as it was).
            if not np.isnan(v).all():
                self._run = 0
            return np.zeros(n, dtype=np.int8)
        return self._walk(v, raw, bounds)

    def _walk(self, v: npt.NDArray[np.float64], raw: Levels,
              bounds: tuple[_Bound, _Bound, _Bound, _Bound]) -> Levels:
        """The checker's level after each sample when some sample is out of limits or
        the checker is not at OK: the rules of the module docstring, worked out run by
        run (runs of equal consecutive levels) rather than sample by sample.

        NaN samples are taken out first (they neither advance nor interrupt a run) and
        show the level after the last sample before them.
        """
        nan = np.isnan(v)
        has_nan = bool(nan.any())
        if has_nan:
            valid = np.flatnonzero(~nan)
            v, raw = v[valid], raw[valid]
            bounds = (_at(bounds[0], valid), _at(bounds[1], valid), _at(bounds[2], valid),
                      _at(bounds[3], valid))
        start = _Carry(self.state, self._pending, self._run)
        d = self.deadband
        if v.shape[0] <= (_STEP_BELOW_DEADBAND if d else _STEP_BELOW_RAW):
            # A few samples: a step each costs less than numpy's set-up for runs.
            high, low = (_held_levels(v, *bounds, d, high=True),
                         _held_levels(v, *bounds, d, high=False)) if d else (raw, raw)
            walked, end = _step(raw, high, low, start, self.persistence)
        elif d == 0:
            walked, end = _walk_raw(raw, start, self.persistence)
        else:
            walked, end = _RunsByLevel(v, raw, bounds, d, self.persistence).walk(start)
        self.state, self._pending, self._run = end
        if not has_nan:
            return walked
        after = np.empty(walked.shape[0] + 1, dtype=np.int8)
        after[0] = start.state
        after[1:] = walked
        shown: Levels = after[np.cumsum(~nan)]
        return shown


class _Carry(NamedTuple):
    """What a check passes to the next: the level, the pending level and its run."""

    state: int
    pending: int
    run: int


# Batches of at most this many samples (NaN left out) are stepped sample by sample:
# numpy's set-up for the run-by-run walk costs more there (more with a deadband, whose
# levels depend on the checker's).
_STEP_BELOW_RAW = 48
_STEP_BELOW_DEADBAND = 128


def _at(bound: _Bound, rows: npt.NDArray[np.intp]) -> _Bound:
    return bound if isinstance(bound, float) else bound[rows]


def _step(raw: Levels, high: Levels, low: Levels, start: _Carry, persistence: int
          ) -> tuple[Levels, _Carry]:
    """The rules of the module docstring as they read, one sample after the other
    (``high``/``low``: the levels with the deadband tightening the high or low limits)."""
    state, pending, run = start
    out = []
    for r, ht, lt in zip(raw.tolist(), high.tolist(), low.tolist(), strict=True):
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
            if run >= persistence:
                state, run = level, 0
        out.append(state)
    return np.array(out, dtype=np.int8), _Carry(state, pending, run)


def _runs(levels: Levels) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Starts and ends (exclusive) of the runs of equal consecutive levels."""
    edges = np.flatnonzero(levels[1:] != levels[:-1]) + 1
    return np.concatenate(([0], edges)), np.concatenate((edges, [levels.shape[0]]))


def _walk_raw(raw: Levels, start: _Carry, persistence: int) -> tuple[Levels, _Carry]:
    """The walk with no deadband, all at once: a sample's level is then its raw level
    whatever the checker's, so the level changes at the ``persistence``-th sample of
    every run at least that long (the first run counting on from the pending run
    carried in, when at its level), to the level of that run; a run at the checker's
    level changes nothing, which taking its level says too."""
    m = raw.shape[0]
    if not m:
        return raw, start
    starts, ends = _runs(raw)
    values = raw[starts]
    lengths = ends - starts
    # The pending run carried in goes on in the first run if that is at its level.
    carried = start.run if start.run and start.pending == int(values[0]) else 0
    lengths[0] += carried
    fired = np.flatnonzero(lengths >= persistence)
    changes = starts[fired] + (persistence - 1)
    if fired.size and fired[0] == 0:
        changes[0] -= carried
    levels = np.concatenate(([start.state], values[fired])).astype(np.int8)
    walked = np.repeat(levels, np.diff(np.concatenate(([0], changes, [m]))))
    state = int(levels[-1])
    last = len(starts) - 1
    level = int(values[last])
    if level != state:  # the last run is pending: shorter than the persistence
        return walked, _Carry(state, level, int(lengths[last]))
    before = int(walked[starts[last] - 1]) if starts[last] else start.state
    if before != level:  # the last run changed the level
        return walked, _Carry(state, level, 0)
    # The level was the last run's already: pending is the run before it, if any.
    return walked, _Carry(state, int(values[last - 1]) if last else start.pending, 0)


_RANKS = np.array(_RANK, dtype=np.int8)
# With a deadband: once changes of level come closer than this many samples apart on
# average (after the first _DENSE_CHANGES of them), the rest of the batch is stepped
# sample by sample, which is then cheaper than the look-ups each change costs.
_DENSE_SPACING = 10
_DENSE_CHANGES = 32


class _Runs(NamedTuple):
    """The runs of the levels under one checker level, and where changes can happen:
    the runs at least ``persistence`` long at another level."""

    starts: npt.NDArray[np.intp]
    ends: npt.NDArray[np.intp]
    levels: Levels
    candidates: npt.NDArray[np.intp]


class _RunsByLevel:
    """The walk with a deadband. While the checker is at a level ``s``, every sample's
    deadband-adjusted level is a function of ``s`` and the sample alone: the levels
    under ``s`` are computed for the whole batch once, cut into runs, and the level
    changes at the ``n``-th sample of the first run (counted from where ``s`` began,
    the pending run carried in) that is at another level and at least ``n`` long. Each
    change costs a few look-ups, not a pass over the batch; where changes come every
    few samples the rest is stepped sample by sample."""

    def __init__(self, v: npt.NDArray[np.float64], raw: Levels,
                 bounds: tuple[_Bound, _Bound, _Bound, _Bound], deadband: float,
                 persistence: int) -> None:
        self.v, self.raw, self.bounds = v, raw, bounds
        self.deadband, self.persistence = deadband, persistence
        self._held: dict[bool, Levels] = {}
        self._under: dict[int, _Runs] = {}

    def held(self, high: bool) -> Levels:
        """Levels with the limits of one side tightened by the deadband."""
        tight = self._held.get(high)
        if tight is None:
            tight = self._held[high] = _held_levels(self.v, *self.bounds, self.deadband,
                                                    high=high)
        return tight

    def levels(self, state: int) -> Levels:
        """Every sample's level as the checker at ``state`` counts it: a less severe
        level counts only beyond the deadband, else the sample is at ``state``."""
        if state == OK:
            return self.raw
        tight = self.held(_HIGH[state])
        rank = _RANK[state]
        held = np.where(_RANKS[tight] < rank, tight, np.int8(state))
        return np.where(_RANKS[self.raw] >= rank, self.raw, held).astype(np.int8)

    def under(self, state: int) -> _Runs:
        runs = self._under.get(state)
        if runs is None:
            levels = self.levels(state)
            starts, ends = _runs(levels)
            run_levels = levels[starts]
            candidates = np.flatnonzero((ends - starts >= self.persistence)
                                        & (run_levels != state))
            runs = self._under[state] = _Runs(starts, ends, run_levels, candidates)
        return runs

    def walk(self, start: _Carry) -> tuple[Levels, _Carry]:
        m = self.v.shape[0]
        persistence = self.persistence
        state, pending, run = start
        cuts, states = [0], [state]  # the level from each cut on
        position = 0  # the next sample to read
        while position < m:
            if len(cuts) > _DENSE_CHANGES and len(cuts) * _DENSE_SPACING > position:
                stepped, end = _step(self.raw[position:], self.held(True)[position:],
                                     self.held(False)[position:],
                                     _Carry(state, pending, run), persistence)
                walked = np.repeat(np.array(states, dtype=np.int8),
                                   np.diff([*cuts, position]))
                return np.concatenate((walked, stepped)), end
            runs = self.under(state)
            # The run holding ``position``.
            k = int(np.searchsorted(runs.starts, position, side="right")) - 1
            level = int(runs.levels[k])
            change = -1
            if level != state:
                # The run under way goes on from the pending run carried in, if at its level.
                already = run if run and pending == level else 0
                if int(runs.ends[k]) - position >= persistence - already:
                    change = position + persistence - already - 1
            if change < 0:
                # Else the first later run long enough, at a level other than ``state``.
                i = int(np.searchsorted(runs.candidates, k, side="right"))
                if i == runs.candidates.shape[0]:
                    break
                j = runs.candidates[i]
                change, level = int(runs.starts[j]) + persistence - 1, int(runs.levels[j])
            state, pending, run = level, level, 0
            cuts.append(change)
            states.append(state)
            position = change + 1
        if position < m:
            pending, run = self.tail(state, position, pending, run)
        walked = np.repeat(np.array(states, dtype=np.int8), np.diff([*cuts, m]))
        return walked, _Carry(state, pending, run)

    def tail(self, state: int, position: int, pending: int, run: int) -> tuple[int, int]:
        """The pending level and its run length after the last sample, when the level
        stays ``state`` from ``position`` to the end."""
        runs = self.under(state)
        first = int(np.searchsorted(runs.starts, position, side="right")) - 1
        last = runs.starts.shape[0] - 1
        level = int(runs.levels[last])
        if level != state:
            length = self.v.shape[0] - max(int(runs.starts[last]), position)
            if last == first and run and pending == level:
                length += run  # the pending run carried in goes on to the end
            return level, length
        # The last sample is at ``state``: no run, and the pending level is that of the
        # run before (never at ``state``: runs are maximal), if it is after ``position``.
        return (int(runs.levels[last - 1]), 0) if last > first else (pending, 0)
