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


def _held_levels(values: npt.NDArray[np.float64], yl: npt.NDArray[np.float64],
                 yh: npt.NDArray[np.float64], rl: npt.NDArray[np.float64],
                 rh: npt.NDArray[np.float64], d: float, high: bool) -> Levels:
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
        if set_index is None:
            idx = np.zeros(n, dtype=np.intp)
        else:
            idx = np.asarray(set_index)
            if idx.shape != v.shape:
                raise ValueError(f"set_index shape {idx.shape} != values shape {v.shape}")
            if n and not np.issubdtype(idx.dtype, np.integer):
                raise TypeError(f"set_index must be integers, got {idx.dtype}")
            if n and (idx.min() < 0 or idx.max() >= len(self.limit_sets)):
                raise IndexError(f"set_index out of range 0..{len(self.limit_sets) - 1}")
        b = self._bounds[idx]
        yl, yh, rl, rh = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        raw = _levels(v, yl, yh, rl, rh)
        d = self.deadband
        if d > 0:
            high_t = _held_levels(v, yl, yh, rl, rh, d, high=True)
            low_t = _held_levels(v, yl, yh, rl, rh, d, high=False)
        else:
            high_t = low_t = raw

        if self.state == OK and not raw.any():
            # The nominal case, vectorised: in limits before and throughout, so every
            # sample only resets a pending run (NaN samples leave it as it was).
            if not np.isnan(v).all():
                self._run = 0
            return np.zeros(n, dtype=np.int8)
        out = np.empty(n, dtype=np.int8)
        state, pending, run, persistence = self.state, self._pending, self._run, \
            self.persistence
        nan = np.isnan(v).tolist()
        for i, (r, ht, lt) in enumerate(zip(raw.tolist(), high_t.tolist(), low_t.tolist(),
                                            strict=True)):
            if nan[i]:
                out[i] = state
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
                if run >= persistence:
                    state, run = level, 0
            out[i] = state
        self.state, self._pending, self._run = state, pending, run
        return out
