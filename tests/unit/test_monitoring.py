"""The monitoring stage on decoded batches: mode-dependent limits, stale packets, contact
events, derived limits; and TMDB errors for bad derived parameters and limit sets."""

from __future__ import annotations

import numpy as np
import pytest

from control_center.errors import TmdbError
from control_center.monitoring.monitor import Monitor
from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb

SECOND = 1_000_000_000
T0 = 1_800_000_000 * SECOND


def _batch(tmdb: Tmdb, packet: str, values: dict[str, list[float]], start: int = T0,
           step: int = SECOND) -> DecodedBatch:
    definition = tmdb.packet(packet)
    n = len(next(iter(values.values())))
    # Fields the test does not set are NaN: no value, so no limit state (states are 0).
    columns = {p.name: np.zeros(n) if p.type in ("enum", "boolean") else np.full(n, np.nan)
               for p in definition.parameters}
    columns.update({name: np.asarray(v) for name, v in values.items()})
    for derived in definition.derived:
        columns.setdefault(derived.name, np.full(n, np.nan))
    return DecodedBatch(spacecraft=tmdb.spacecraft, packet=definition,
                        times_ns=start + np.arange(n, dtype=np.int64) * step,
                        sequence_counts=np.arange(n, dtype=np.uint16), values=columns,
                        raw={})


def test_night_limits_apply_while_the_power_mode_says_night(tmdbs: list[Tmdb]) -> None:
    lander = tmdbs[0]
    night, day = 3, 2  # power_mode SURFACE_NIGHT, SURFACE_DAY
    monitor = Monitor([lander])
    monitor.on_batch(_batch(lander, "lander_power", {"power_mode": [night]}), T0)
    # -12 degC: inside the night set (red below -25), below the day red limit (-10).
    changes, _ = monitor.on_batch(_batch(lander, "lander_thermal",
                                         {"battery_temperature": [-12.0] * 4}), T0)
    assert changes == []
    monitor.on_batch(_batch(lander, "lander_power", {"power_mode": [day]}), T0)
    changes, events = monitor.on_batch(_batch(lander, "lander_thermal",
                                              {"battery_temperature": [-12.0] * 4}), T0)
    assert [(c.subject, c.transition, c.severity) for c in changes] == [
        ("battery_temperature", "raised", "red")]
    assert "(limit -10.0)" in changes[0].message
    assert any(e.kind == "alarm" for e in events)


def test_stale_packets_and_contact_loss(tmdbs: list[Tmdb]) -> None:
    lander = tmdbs[0]
    monitor = Monitor([lander], stale_periods=5.0, contact_silence=60.0)
    _, events = monitor.on_batch(_batch(lander, "lander_power", {"battery_soc": [80.0]}), T0)
    assert [e.kind for e in events] == ["contact"] and "acquisition" in events[0].message
    assert monitor.tick(T0 + 4 * SECOND) == ([], [])  # 4 periods: not yet
    changes, _ = monitor.tick(T0 + 6 * SECOND)
    assert [(c.kind, c.subject, c.transition) for c in changes] == [
        ("stale", "lander_power", "raised")]
    changes, _ = monitor.on_batch(_batch(lander, "lander_power", {"battery_soc": [80.0]}),
                                  T0 + 7 * SECOND)
    assert [(c.kind, c.transition) for c in changes] == [("stale", "returned")]
    _, events = monitor.tick(T0 + 70 * SECOND)
    assert [e.message for e in events if e.kind == "contact"] == ["lander loss of signal"]
    # Out of contact, a silent packet type is not stale: the whole spacecraft is gone.
    changes, _ = monitor.tick(T0 + 80 * SECOND)
    assert not [c for c in changes if c.transition == "raised"]


def test_derived_parameters_are_limit_checked(tmdbs: list[Tmdb]) -> None:
    lander = tmdbs[0]
    monitor = Monitor([lander])
    changes, _ = monitor.on_batch(_batch(lander, "lander_power",
                                         {"bus_power": [300.0, 600.0, 750.0]}), T0)
    assert [(c.subject, c.transition, c.severity) for c in changes] == [
        ("bus_power", "raised", "yellow"), ("bus_power", "escalated", "red")]


def test_replayed_batches_raise_no_live_alarms(tmdbs: list[Tmdb]) -> None:
    from dataclasses import replace

    lander = tmdbs[0]
    batch = replace(_batch(lander, "lander_power", {"bus_power": [750.0]}), source="replay")
    assert Monitor([lander]).on_batch(batch, T0) == ([], [])


def _document(derived: object = None, limit_sets: object = None) -> dict[str, object]:
    parameter: dict[str, object] = {"name": "volts", "bit_length": 16, "type": "unsigned",
                                    "limits": {"yellow": [1.0, 9.0]}}
    if limit_sets is not None:
        parameter["limit_sets"] = limit_sets
    packet: dict[str, object] = {"name": "probe_hk", "apid": 5, "parameters": [
        parameter, {"name": "mode", "bit_length": 8, "type": "enum",
                    "states": {0: "DAY", 1: "NIGHT"}}]}
    if derived is not None:
        packet["derived"] = derived
    return {"spacecraft": "probe", "packets": [packet]}


def test_bad_derived_expressions_name_the_parameter_and_the_token() -> None:
    with pytest.raises(TmdbError) as error:
        parse_tmdb(_document(derived=[{"name": "watts", "expression": "volts * amps"}]), "p.yaml")
    (problem,) = error.value.problems
    assert problem.startswith("p.yaml: packet 'probe_hk' derived #1 'watts':")
    assert "'amps'" in problem
    with pytest.raises(TmdbError, match="__import__"):
        parse_tmdb(_document(derived=[{"name": "x", "expression": "__import__('os')"}]), "p")


def test_limit_sets_must_name_a_known_mode_and_state() -> None:
    good = parse_tmdb(_document(limit_sets=[{"when": {"mode": ["NIGHT"]},
                                             "limits": {"yellow": [0.0, 9.0]}}]), "p")
    (mode_limits,) = good.packets[0].parameters[0].monitoring.limit_sets
    assert mode_limits.states == (1,) and mode_limits.limits.yellow_low == 0.0
    with pytest.raises(TmdbError, match="has no state DUSK"):
        parse_tmdb(_document(limit_sets=[{"when": {"mode": ["DUSK"]}, "limits": {}}]), "p")
    with pytest.raises(TmdbError, match="mode 'phase' is not an enum"):
        parse_tmdb(_document(limit_sets=[{"when": {"phase": ["DAY"]}, "limits": {}}]), "p")
