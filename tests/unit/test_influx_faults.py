"""InfluxDB's answers, classified against a real influxd: only lines it proves bad are
given up (and kept as dead letters); a missing database, refused credentials, a body too
large and a spool the disk refuses lose nothing and acknowledge nothing early."""

from __future__ import annotations

from pathlib import Path

from control_center.storage.answers import classify
from control_center.storage.refusals import plan_refusal
from control_center.storage.spool import DeadLetters


def test_answers_measured_on_influxd_1_6_7_are_classified() -> None:
    """The bodies below are what influxd 1.6.7 answered (recorded by hand): only the data
    ones are ``bad_data``."""
    assert classify(204, "").kind == "stored"
    assert classify(404, '{"error":"database not found: \\"p\\""}\n').kind \
        == "missing_database"
    assert classify(403, '{"error":"\\"reader\\" user is not authorized to write to '
                         'database \\"p\\""}\n').kind == "auth"
    assert classify(401, '{"error":"authorization failed"}\n').kind == "auth"
    assert classify(413, '{"error":"Request Entity Too Large"}\n').kind == "too_large"
    assert classify(500, '{"error":"timeout"}\n').kind == "server"
    assert classify(400, '{"error":"database is required"}').kind == "server"  # not data
    assert classify(400, '{"error":"unable to parse \'garbage\': missing fields"}').kind \
        == "bad_data"
    conflict = classify(400, '{"error":"partial write: field type conflict: input field '
                             '\\"v\\" on measurement \\"m\\" is type integer, already '
                             'exists as type float dropped=1"}')
    assert conflict.kind == "bad_data"
    plan = plan_refusal([b"m v=1 7", b"m v=2i 8", b"m v=3 9"], conflict)
    # The others and the one writing v as an integer are posted apart: that one's own
    # answer (dropped=1 of 1) then proves it refused.
    assert plan.dead == [] and plan.repost == [[b"m v=1 7", b"m v=3 9"], [b"m v=2i 8"]]
    assert plan_refusal([b"m v=2i 8"], conflict).dead[0][1] == [b"m v=2i 8"]
    parse = classify(400, '{"error":"partial write: unable to parse \'m v=oops= 4\': '
                          'invalid boolean\\nunable to parse \'bad line here\': invalid '
                          'field format dropped=0"}\n')
    plan = plan_refusal([b"m v=1 3", b"m v=oops= 4", b"m v=3 5", b"bad line here"], parse)
    assert plan.stored == 2 and plan.repost == []
    assert [lines for _, lines in plan.dead] == [[b"m v=oops= 4"], [b"bad line here"]]
    assert "invalid boolean" in plan.dead[0][0]


def test_dead_letters_stay_within_their_bound(tmp_path: Path) -> None:
    store = DeadLetters(tmp_path / "dead", max_bytes=4000, file_bytes=1000)
    for index in range(40):
        store.add([(f"refused ({index})", [b"m v=%d %d" % (index, index)] * 10)])
    files = sorted((tmp_path / "dead").glob("*.lp"))
    assert sum(path.stat().st_size for path in files) <= 4000 + 1000
    assert store.lines == 400 and store.discarded_lines > 0
    kept = sum(1 for path in files for line in path.read_text().splitlines()
               if not line.startswith("#"))
    assert kept + store.discarded_lines == 400
    assert "refused (39)" in files[-1].read_text()  # the newest are kept
