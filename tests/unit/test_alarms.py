"""Unit tests of control_center.monitoring.alarms: every transition of the alarm state machine."""

from __future__ import annotations

import json

import pytest

from control_center.monitoring.alarms import Alarm, AlarmChange, AlarmManager
from control_center.monitoring.limits import OK, RED_HIGH, RED_LOW, YELLOW_HIGH, YELLOW_LOW

SC = "lander"
P = "battery_soc"


def transitions(changes: list[AlarmChange]) -> list[str]:
    return [c.transition for c in changes]


def raised(manager: AlarmManager, level: int = YELLOW_LOW, value: float = 18.0,
           time_ns: int = 100) -> AlarmChange:
    changes = manager.on_level(SC, P, level, value, time_ns, limit=20.0)
    assert transitions(changes) == ["raised"]
    return changes[0]


def test_ok_without_alarm_does_nothing() -> None:
    manager = AlarmManager()
    assert manager.on_level(SC, P, OK, 50.0, 1) == []
    assert manager.on_stale(SC, "hk", False, 1) == []
    assert manager.active() == []


def test_raise() -> None:
    manager = AlarmManager()
    change = manager.on_level(SC, P, RED_LOW, 12.3, 100, limit=15.0)[0]
    assert change == AlarmChange(
        alarm_id="lander.battery_soc.1", spacecraft=SC, subject=P, kind="limit",
        transition="raised", severity="red", level=RED_LOW, value=12.3, time_ns=100,
        acknowledged=False, shelved_until_ns=None,
        message="lander battery_soc RED LOW 12.3 (limit 15.0)",
    )
    [alarm] = manager.active()
    assert alarm.alarm_id == "lander.battery_soc.1"
    assert (alarm.severity, alarm.level, alarm.raised_ns, alarm.acknowledged,
            alarm.returned) == ("red", RED_LOW, 100, False, False)


def test_same_level_again_does_not_spam() -> None:
    manager = AlarmManager()
    raised(manager)
    assert manager.on_level(SC, P, YELLOW_LOW, 17.0, 200) == []
    assert manager.on_level(SC, P, YELLOW_LOW, 16.0, 300) == []


def test_escalation_resets_acknowledgement() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    ack = manager.acknowledge(alarm_id, "alice", "seen", 150)
    assert transitions(ack) == ["acknowledged"]
    assert ack[0].acknowledged and ack[0].by == "alice" and ack[0].note == "seen"
    [change] = manager.on_level(SC, P, RED_LOW, 12.0, 200, limit=15.0)
    assert (change.transition, change.severity, change.acknowledged, change.alarm_id) == \
        ("escalated", "red", False, alarm_id)
    assert manager.get(alarm_id).acknowledged is False


def test_side_change_at_same_severity_is_an_escalation() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    manager.acknowledge(alarm_id, "alice", "", 150)
    [change] = manager.on_level(SC, P, YELLOW_HIGH, 34.0, 200)
    assert (change.transition, change.level, change.acknowledged) == \
        ("escalated", YELLOW_HIGH, False)


def test_deescalation_keeps_acknowledgement() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager, RED_HIGH, 36.0).alarm_id
    manager.acknowledge(alarm_id, "alice", "", 150)
    [change] = manager.on_level(SC, P, YELLOW_HIGH, 34.0, 200)
    assert (change.transition, change.severity, change.acknowledged) == \
        ("deescalated", "yellow", True)


def test_return_of_an_acknowledged_alarm_clears_it() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    manager.acknowledge(alarm_id, "alice", "", 150)
    [change] = manager.on_level(SC, P, OK, 25.0, 200)
    assert (change.transition, change.severity, change.level, change.alarm_id) == \
        ("cleared", "none", OK, alarm_id)
    assert manager.active() == []
    with pytest.raises(KeyError):
        manager.get(alarm_id)


def test_return_unacknowledged_then_acknowledge_clears() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    [change] = manager.on_level(SC, P, OK, 25.0, 200)
    assert (change.transition, change.severity, change.acknowledged) == \
        ("returned", "none", False)
    assert "back in limits" in change.message
    [alarm] = manager.active()
    assert alarm.returned
    assert manager.on_level(SC, P, OK, 26.0, 250) == []  # no spam
    changes = manager.acknowledge(alarm_id, "bob", "ok now", 300)
    assert transitions(changes) == ["acknowledged", "cleared"]
    assert all(c.alarm_id == alarm_id and c.acknowledged for c in changes)
    assert changes[0].by == "bob"
    assert manager.active() == []


def test_returned_alarm_out_again_is_raised_with_the_same_id() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    manager.on_level(SC, P, OK, 25.0, 200)
    [change] = manager.on_level(SC, P, RED_LOW, 10.0, 300)
    assert (change.transition, change.alarm_id, change.severity) == ("raised", alarm_id, "red")
    alarm = manager.get(alarm_id)
    assert not alarm.returned and not alarm.acknowledged
    assert alarm.raised_ns == 100 and alarm.updated_ns == 300


def test_new_occurrence_gets_a_new_id() -> None:
    manager = AlarmManager()
    first = raised(manager).alarm_id
    manager.acknowledge(first, "alice", "", 150)
    manager.on_level(SC, P, OK, 25.0, 200)
    second = raised(manager, time_ns=300).alarm_id
    assert (first, second) == ("lander.battery_soc.1", "lander.battery_soc.2")
    # other spacecraft / parameter: independent counters
    assert manager.on_level("orbiter", P, RED_HIGH, 99.0, 1)[0].alarm_id == \
        "orbiter.battery_soc.1"


def test_acknowledge_of_raised_alarm_keeps_it_listed() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    assert transitions(manager.acknowledge(alarm_id, "alice", "", 150)) == ["acknowledged"]
    [alarm] = manager.active()
    assert alarm.acknowledged and alarm.by == "alice"
    assert manager.acknowledge(alarm_id, "alice", "", 160) == []  # already acknowledged


def test_unknown_id_raises_key_error() -> None:
    manager = AlarmManager()
    with pytest.raises(KeyError):
        manager.acknowledge("lander.nothing.1", "alice", "", 1)
    with pytest.raises(KeyError):
        manager.shelve("lander.nothing.1", 10, "alice", "", 1)


def test_shelve_updates_and_unshelve() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    [shelved] = manager.shelve(alarm_id, 1_000, "alice", "sensor glitch", 150)
    assert (shelved.transition, shelved.shelved_until_ns, shelved.by, shelved.note) == \
        ("shelved", 1_000, "alice", "sensor glitch")
    # level changes still update the alarm, flagged as shelved
    [change] = manager.on_level(SC, P, RED_LOW, 10.0, 200)
    assert (change.transition, change.shelved_until_ns) == ("escalated", 1_000)
    assert manager.tick(999) == []
    [unshelved] = manager.tick(1_000)
    assert (unshelved.transition, unshelved.shelved_until_ns, unshelved.severity) == \
        ("unshelved", None, "red")
    assert manager.get(alarm_id).shelved_until_ns is None
    assert manager.tick(2_000) == []


def test_shelving_covers_a_new_occurrence_of_the_subject() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    manager.shelve(alarm_id, 1_000, "alice", "", 150)
    manager.acknowledge(alarm_id, "alice", "", 160)
    assert transitions(manager.on_level(SC, P, OK, 25.0, 200)) == ["cleared"]
    assert manager.tick(500) == []
    again = manager.on_level(SC, P, YELLOW_LOW, 18.0, 600)[0]
    assert (again.transition, again.shelved_until_ns) == ("raised", 1_000)
    assert transitions(manager.tick(1_000)) == ["unshelved"]
    # an expired shelving whose alarm is gone ends silently
    manager.shelve(again.alarm_id, 2_000, "alice", "", 1_100)
    manager.acknowledge(again.alarm_id, "alice", "", 1_200)
    manager.on_level(SC, P, OK, 25.0, 1_300)
    assert manager.tick(3_000) == []
    assert manager.on_level(SC, P, YELLOW_LOW, 18.0, 3_100)[0].shelved_until_ns is None


def test_shelve_until_must_be_in_the_future() -> None:
    manager = AlarmManager()
    alarm_id = raised(manager).alarm_id
    with pytest.raises(ValueError):
        manager.shelve(alarm_id, 150, "alice", "", 150)


def test_stale_alarm_lifecycle() -> None:
    manager = AlarmManager()
    [change] = manager.on_stale(SC, "hk_power", True, 100)
    assert (change.kind, change.subject, change.severity, change.level, change.value,
            change.transition, change.alarm_id) == \
        ("stale", "hk_power", "yellow", 0, None, "raised", "lander.hk_power.stale.1")
    assert "STALE" in change.message
    assert manager.on_stale(SC, "hk_power", True, 150) == []
    [back] = manager.on_stale(SC, "hk_power", False, 200)
    assert (back.transition, back.severity) == ("returned", "none")
    assert transitions(manager.on_stale(SC, "hk_power", True, 300)) == ["raised"]
    manager.acknowledge(change.alarm_id, "alice", "", 350)
    assert transitions(manager.on_stale(SC, "hk_power", False, 400)) == ["cleared"]
    assert manager.active() == []


def test_stale_and_limit_alarms_of_one_name_are_separate() -> None:
    manager = AlarmManager()
    a = manager.on_stale(SC, "power", True, 100)[0].alarm_id
    b = manager.on_level(SC, "power", RED_HIGH, 9.0, 100)[0].alarm_id
    assert a != b
    assert len(manager.active()) == 2


def test_active_is_sorted_red_first_then_by_time() -> None:
    manager = AlarmManager()
    manager.on_level(SC, "a", YELLOW_HIGH, 1.0, 10)
    manager.on_level(SC, "b", RED_HIGH, 1.0, 30)
    manager.on_level(SC, "c", RED_LOW, 1.0, 20)
    manager.on_stale(SC, "hk", True, 5)
    manager.on_level(SC, "d", YELLOW_LOW, 1.0, 1)
    manager.on_level(SC, "d", OK, 2.0, 40)  # returned: listed, severity none
    assert [a.subject for a in manager.active()] == ["c", "b", "hk", "a", "d"]


def test_message_without_limit() -> None:
    manager = AlarmManager()
    change = manager.on_level(SC, P, YELLOW_HIGH, 34.0, 1)[0]
    assert change.message == "lander battery_soc YELLOW HIGH 34.0"


def test_json_round_trip_mid_lifecycle() -> None:
    manager = AlarmManager()
    returned_id = manager.on_level(SC, "a", YELLOW_LOW, 1.0, 10)[0].alarm_id
    manager.on_level(SC, "a", OK, 2.0, 20)
    acked_id = manager.on_level(SC, "b", RED_HIGH, 50.0, 30)[0].alarm_id
    manager.acknowledge(acked_id, "alice", "known", 40)
    manager.shelve(acked_id, 1_000, "alice", "noisy", 50)
    manager.on_stale(SC, "hk", True, 60)
    old = manager.on_level(SC, "c", RED_LOW, 0.0, 70)[0].alarm_id
    manager.acknowledge(old, "bob", "", 80)
    manager.on_level(SC, "c", OK, 5.0, 90)  # cleared: only the counter remains

    data = json.loads(json.dumps(manager.to_json()))
    restored = AlarmManager.from_json(data)
    assert restored.active() == manager.active()
    assert restored.to_json() == manager.to_json()

    # the restored manager carries on exactly like the original
    for m in (manager, restored):
        assert transitions(m.acknowledge(returned_id, "bob", "", 100)) == \
            ["acknowledged", "cleared"]
        assert transitions(m.tick(1_000)) == ["unshelved"]
        assert m.on_level(SC, "c", RED_LOW, 0.0, 1_100)[0].alarm_id == "lander.c.2"
        assert m.on_level(SC, "b", RED_HIGH, 51.0, 1_200) == []
    assert restored.to_json() == manager.to_json()


def test_from_json_rejects_bad_data() -> None:
    with pytest.raises(ValueError):
        AlarmManager.from_json({"version": 99, "alarms": [], "counters": [], "shelves": []})
    good = AlarmManager()
    good.on_level(SC, P, RED_HIGH, 1.0, 1)
    data = good.to_json()
    data["alarms"][0]["severity"] = "purple"
    with pytest.raises(ValueError):
        AlarmManager.from_json(data)


def test_alarm_is_a_plain_record() -> None:
    alarm = Alarm(alarm_id="x.y.1", spacecraft="x", subject="y", kind="limit",
                  severity="red", level=RED_HIGH, value=1.0, raised_ns=1, updated_ns=1)
    assert alarm.key == ("x", "limit", "y")
    assert not alarm.acknowledged and not alarm.returned and alarm.shelved_until_ns is None
