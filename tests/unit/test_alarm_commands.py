"""An operator's alarm command given at one control center, applied at another (issue 16).

Each center numbers its alarms itself, so after one of them saw another history (it
started later, its state was reset) the same alarm has other ids at the two. ``isls
alarms`` sends the alarm's key and raise time with the id; the alarm stage finds the
same alarm by them, and acts on no other."""

from __future__ import annotations

from typing import Any

import pytest

from control_center.config import MqttSettings
from control_center.monitoring.limits import OK, RED_HIGH
from control_center.monitoring.monitor import Monitor
from control_center.pipeline.alarm_stage import AlarmStage
from control_center.pipeline.publisher import Publisher
from control_center.telemetry.decoder import IngestStats

SC, P = "isls1-lander-a", "imu_rate_z"


def center(earlier_alarms: int) -> AlarmStage:
    """A center's alarm stage that has seen ``earlier_alarms`` of (SC, P) come and go."""
    stats = IngestStats()
    stage = AlarmStage(Monitor([]), Publisher(MqttSettings(), "test", stats), stats)
    alarms = stage.monitor.alarms
    for k in range(earlier_alarms):
        alarms.on_level(SC, P, RED_HIGH, 9.0, k * 10)
        alarms.on_level(SC, P, OK, 0.0, k * 10 + 1)
        alarms.acknowledge(alarms.active()[0].alarm_id, "flight", "", k * 10 + 2)
    assert alarms.active() == []
    return stage


def command(stage: AlarmStage, action: str = "ack") -> dict[str, Any]:
    """The command ``isls alarms ack`` sends at ``stage``'s center for its listed alarm."""
    alarm = stage.monitor.alarms.active()[0]
    return {"action": action, "alarm_id": alarm.alarm_id, "by": "ivanov@moscow", "note": "",
            "minutes": 30.0,
            "raised": {"spacecraft": alarm.spacecraft, "kind": alarm.kind,
                       "subject": alarm.subject, "raised_ns": alarm.raised_ns}}


@pytest.mark.parametrize("action", ["ack", "shelve"])
def test_a_command_reaches_the_same_alarm_under_another_id(action: str) -> None:
    moscow, beijing = center(0), center(2)
    for stage in (moscow, beijing):
        stage.monitor.alarms.on_level(SC, P, RED_HIGH, 9.5, 1_000)
    given = command(moscow, action)
    assert given["alarm_id"] == f"{SC}.{P}.1"
    assert beijing.monitor.alarms.active()[0].alarm_id == f"{SC}.{P}.3"
    for stage in (moscow, beijing):
        changes, events = stage.apply(given)
        assert [c.transition for c in changes] == \
            ["acknowledged" if action == "ack" else "shelved"]
        # Each center records the alarm under its own id.
        assert changes[0].alarm_id == stage.monitor.alarms.active()[0].alarm_id
        assert events[0].message.endswith(changes[0].alarm_id)


def test_an_id_naming_another_alarm_here_is_not_acted_on() -> None:
    # Moscow's third alarm of the parameter and Beijing's third are not the same alarm:
    # the raise times differ. By id alone Beijing would acknowledge an alarm no one saw.
    moscow, beijing = center(2), center(2)
    moscow.monitor.alarms.on_level(SC, P, RED_HIGH, 9.5, 1_000)
    beijing.monitor.alarms.on_level(SC, P, RED_HIGH, 9.7, 2_000)
    given = command(moscow)
    assert beijing.monitor.alarms.active()[0].alarm_id == given["alarm_id"]
    assert beijing.apply(given) == ([], [])
    assert not beijing.monitor.alarms.active()[0].acknowledged
    assert [c.transition for c in moscow.apply(given)[0]] == ["acknowledged"]


def test_a_command_without_the_raise_is_applied_by_id() -> None:
    # As published by hand or by an older console: the id alone.
    stage = center(1)
    stage.monitor.alarms.on_level(SC, P, RED_HIGH, 9.5, 1_000)
    given = command(stage)
    del given["raised"]
    assert [c.transition for c in stage.apply(given)[0]] == ["acknowledged"]


@pytest.mark.parametrize("raised", [{"spacecraft": SC}, {"spacecraft": SC, "kind": "limit",
                                    "subject": P, "raised_ns": "soon"}, "lander"])
def test_a_malformed_raise_is_for_no_alarm(raised: object) -> None:
    stage = center(0)
    stage.monitor.alarms.on_level(SC, P, RED_HIGH, 9.5, 1_000)
    given = command(stage) | {"raised": raised}
    if isinstance(raised, dict):
        assert stage.apply(given) == ([], [])
    else:  # not an object at all: the id decides, as without it
        assert [c.transition for c in stage.apply(given)[0]] == ["acknowledged"]
