"""Clear errors instead of tracebacks, as a user meets them: a config that is not
UTF-8 or holds nan, a damaged archive, a pass id typed as a pattern, a recorder that
died mid-pass, a broker that is away, a wrong password and an account without the
right to command. Real processes (``python -m control_center.cli``) and real servers."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from control_center.archive.recorder import ArchiveWriter, find_pass, iter_pass_records, list_passes
from control_center.config import Config, load_config
from control_center.errors import ConfigError, IslsError
from control_center.operations.security import INGEST, OPERATOR, accounts, write_broker_security
from control_center.operations.servers import MosquittoServer, free_port
from control_center.telemetry.tmdb import Tmdb
from simulators.runner import PacketGenerator, SimulatorService, make_model
from tests.conftest import CONFIG, ISLS, PROJECT, start_isls, wait_for

SECOND = 1_000_000_000
START_NS = 1_800_000_000 * SECOND


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(extra)
    return env


def _isls(args: list[str], env: dict[str, str], timeout: float = 60
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ISLS, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _one_line(stderr: str) -> str:
    """The one line a failure prints; no traceback, nothing else."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _config_file(tmp_path: Path, replacements: dict[str, str]) -> Path:
    """The shipped configuration with its telemetry databases at absolute paths, and
    the given text replaced."""
    text = CONFIG.read_text().replace('tmdb = "tmdb/', f'tmdb = "{PROJECT}/config/tmdb/')
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "isls.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------- configuration


def test_a_config_that_is_not_utf8_is_one_line_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "isls.toml"
    config.write_bytes(CONFIG.read_bytes().replace(b'"../state"', b'"../st\xe9te"'))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(config, {})
    for command in (["passes"], ["tmdb", "check"], ["ingest"]):
        result = _isls(["--config", str(config), *command], _env())
        assert result.returncode == 2
        line = _one_line(result.stderr)
        assert str(config) in line and "not UTF-8 text" in line and "at byte" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_non_finite_numbers_in_the_config_are_refused_at_load(tmp_path: Path,
                                                              value: str) -> None:
    config = _config_file(tmp_path, {"silence = 60.0 ": f"silence = {value} ",
                                     "flush_interval = 0.25": "flush_interval = inf"})
    with pytest.raises(ConfigError) as error:
        load_config(config, {})
    assert error.value.key == "influx.flush_interval"  # the first one, in file order
    fixed = _config_file(tmp_path, {"silence = 60.0 ": f"silence = {value} "})
    with pytest.raises(ConfigError) as error:
        load_config(fixed, {})
    assert error.value.key == "archive.silence" and "finite number" in error.value.reason
    # Refused before anything starts: `isls tmdb check` says so, and the ingest never
    # gets to divide by it.
    for command in (["tmdb", "check"], ["ingest"]):
        result = _isls(["--config", str(fixed), *command],
                       _env(ISLS_STATE_DIR=str(tmp_path / "state")))
        assert result.returncode == 2, result.stderr
        line = _one_line(result.stderr)
        assert line.startswith(f"isls: {fixed}: archive.silence: must be a finite number")


def test_non_finite_numbers_in_the_telemetry_database_are_refused(tmp_path: Path) -> None:
    text = (PROJECT / "config/tmdb/lander.yaml").read_text()
    for old, new in {"period: 0.1": "period: .nan",
                     "red: [-30.0, 30.0]": "red: [-.inf, 30.0]",
                     "deadband: 1.0": "deadband: .inf",
                     "red: [24.0, 34.5]": "red: [24.0, .NaN]"}.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    bad = tmp_path / "lander.yaml"
    bad.write_text(text)
    result = _isls(["tmdb", "check", str(bad)], _env())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if "finite" in line]
    assert len(problems) == 4, result.stderr
    assert all(line.startswith(f"{bad}: packet ") for line in problems)
    for key in ("period", "limits.red[0]", "deadband", "limits.red[1]"):
        assert any(f"{key} must be a finite number" in line for line in problems), key


# --------------------------------------------------------------------------- archive


def _records(count: int, start_ns: int) -> list[tuple[int, bytes]]:
    return [(start_ns + i * SECOND // 10, bytes([i % 256]) * (10 + i)) for i in range(count)]


def _record_passes(root: Path) -> list[str]:
    """Three lander passes (split by silence) and one orbiter pass, all closed."""
    writer = ArchiveWriter(root, silence=30.0)
    ids: list[str] = []
    for index in range(3):
        for ert, payload in _records(10, START_NS + index * 100 * SECOND):
            pass_id = writer.record("lander", ert, "sim", payload)
        ids.append(pass_id)
    for ert, payload in _records(10, START_NS + 50 * SECOND):
        orbiter = writer.record("orbiter", ert, "sim", payload)
    writer.close()
    return [*ids, orbiter]


def test_a_damaged_pass_is_listed_as_damaged_and_hides_no_other(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = state / "archive"
    first, second, third, orbiter = _record_passes(root)
    (find_pass(root, first) / "pass.json").write_bytes(b'\xff{"id": ')
    (find_pass(root, second) / "pass.json").write_text('{"id": 7, "spacecraft": "lander"}')
    # The orbiter's pass was left open by a recorder that died, and the header of its
    # segment was overwritten: the listing rescans it.
    summary = find_pass(root, orbiter) / "pass.json"
    summary.write_text(summary.read_text().replace('"closed": true', '"closed": false'))
    with (find_pass(root, orbiter) / "seg-0000.isla").open("r+b") as segment:
        segment.write(b"garbage!")
    untouched = (find_pass(root, first) / "pass.json").read_bytes()

    result = _isls(["passes"], _env(ISLS_STATE_DIR=str(state)))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {first, second, third, orbiter}
    assert rows[first].endswith("damaged") and rows[second].endswith("damaged")
    assert rows[orbiter].endswith("damaged") and rows[third].endswith("closed")
    reasons = result.stderr.splitlines()
    assert len(reasons) == 3
    assert any(first in r and "pass.json is not valid JSON" in r for r in reasons)
    assert any(second in r and "pass.json: id is 7, not str" in r for r in reasons)
    assert any(orbiter in r and "damaged segment header" in r for r in reasons)

    # What can be read is still there: figures recomputed, every record readable.
    by_id = {p.id: p for p in list_passes(root)}
    assert by_id[first].records == 10 and by_id[first].start_ns == START_NS
    assert by_id[orbiter].records == 10
    assert len(list(iter_pass_records(find_pass(root, orbiter)))) == 10
    show = _isls(["passes", "show", first], _env(ISLS_STATE_DIR=str(state)))
    assert show.returncode == 0 and "records     10" in show.stdout
    assert "DAMAGED: pass.json is not valid JSON" in show.stdout

    # An ingest starting on this archive neither crashes nor guesses at the damaged
    # summary; it takes over the interrupted orbiter pass and closes it at its end.
    ArchiveWriter(root).close()
    assert (find_pass(root, first) / "pass.json").read_bytes() == untouched
    (orbiter_pass,) = [p for p in list_passes(root) if p.spacecraft == "orbiter"]
    assert orbiter_pass.closed and orbiter_pass.records == 10


def test_a_pass_id_is_taken_literally_never_as_a_pattern(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = state / "archive"
    ids = _record_passes(root)
    # The broker is never contacted: the id is refused before.
    env = _env(ISLS_STATE_DIR=str(state), ISLS_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    for command in (["replay", "*"], ["replay", "lander-*"], ["passes", "show", "*"],
                    ["replay", f"../lander/{ids[0]}"], ["replay", "lander-2027*"]):
        result = _isls(command, env)
        assert result.returncode == 2
        line = _one_line(result.stderr)
        assert "a pass id is SPACECRAFT-YYYYMMDDTHHMMSSZ" in line and "not a pattern" in line
    unknown = _isls(["replay", "lander-20300101T000000Z"], env)
    assert unknown.returncode == 2
    line = _one_line(unknown.stderr)
    assert "no pass 'lander-20300101T000000Z'" in line and ids[-1] in line
    with pytest.raises(IslsError, match="not a pattern"):
        find_pass(root, "*")
    assert find_pass(root, ids[0]) == root / "lander" / ids[0]


_CHILD_WRITER = """
import os, sys
from pathlib import Path
from control_center.archive.recorder import ArchiveWriter
writer = ArchiveWriter(Path(sys.argv[1]), silence=30.0)
start, count = int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    pass_id = writer.record("lander", start + i * 100_000_000, "sim", bytes([i]) * (10 + i))
print(pass_id, flush=True)
if sys.argv[4] == "die":
    os._exit(0)  # no close: as after kill -9 or a power cut
sys.stdin.read()  # recording until the test closes stdin
writer.close()
"""


def _child_writer(root: Path, start_ns: int, count: int, end: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD_WRITER, str(root), str(start_ns),
                             str(count), end], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=PROJECT)


def _died_mid_pass(root: Path, count: int = 10) -> str:
    child = _child_writer(root, START_NS, count, "die")
    assert child.stdout is not None
    pass_id = child.stdout.readline().strip()
    assert child.wait(30) == 0
    return pass_id


def test_a_pass_whose_recorder_died_is_resumed_when_the_contact_goes_on(
        tmp_path: Path) -> None:
    root = tmp_path / "archive"
    pass_id = _died_mid_pass(root)
    (interrupted,) = list_passes(root)
    assert interrupted.id == pass_id and not interrupted.closed and interrupted.records == 10
    # The next recorder gets data 5 s after the last record: the same contact.
    writer = ArchiveWriter(root, silence=30.0)
    later = START_NS + 9 * SECOND // 10 + 5 * SECOND
    for i in range(5):
        assert writer.record("lander", later + i * SECOND, "sim", b"after") == pass_id
    assert len(list_passes(root)) == 1
    (recording,) = list_passes(root)
    assert recording.state == "open" and recording.records == 15
    writer.close()
    (resumed,) = list_passes(root)
    assert resumed.state == "closed" and resumed.id == pass_id
    assert resumed.records == 15 and resumed.segments == 2
    assert resumed.start_ns == START_NS and resumed.end_ns == later + 4 * SECOND
    payloads = [r.payload for r in iter_pass_records(find_pass(root, pass_id))]
    assert payloads[:10] == [bytes([i]) * (10 + i) for i in range(10)]
    assert payloads[10:] == [b"after"] * 5


def test_a_pass_whose_recorder_died_ends_at_its_data_when_the_contact_did(
        tmp_path: Path) -> None:
    root = tmp_path / "archive"
    pass_id = _died_mid_pass(root)
    writer = ArchiveWriter(root, silence=30.0)
    later = START_NS + 600 * SECOND  # ten minutes later: a new contact
    assert writer.record("lander", later, "sim", b"next") != pass_id
    writer.close()
    first, second = list_passes(root)
    assert first.id == pass_id and first.state == "closed"
    assert first.end_ns == START_NS + 9 * SECOND // 10 and first.records == 10
    assert first.segments == 1 == len(list(find_pass(root, pass_id).glob("seg-*")))
    assert second.state == "closed" and second.start_ns == later
    # With no data at all after the restart, a clean stop closes it too.
    other = tmp_path / "other"
    _died_mid_pass(other)
    ArchiveWriter(other, silence=30.0).close()
    assert [p.state for p in list_passes(other)] == ["closed"]


def test_a_pass_a_live_recorder_holds_is_left_to_it(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _died_mid_pass(tmp_path / "dead")
    (dead,) = list_passes(tmp_path / "dead")
    assert dead.state == "interrupted"  # not "open": nobody records it any more
    child = _child_writer(root, START_NS, 10, "wait")
    assert child.stdout is not None and child.stdin is not None
    pass_id = child.stdout.readline().strip()
    try:
        (held,) = list_passes(root)
        assert held.id == pass_id and held.state == "open"
        writer = ArchiveWriter(root, silence=30.0)  # a second recorder, same archive
        assert writer.record("lander", START_NS + SECOND, "sim", b"mine") != pass_id
        writer.close()
        assert {p.id: p.state for p in list_passes(root)}[pass_id] == "open"
    finally:
        child.stdin.close()
        assert child.wait(30) == 0
    assert {p.state for p in list_passes(root)} == {"closed"}


def test_an_ingest_killed_and_restarted_mid_pass_leaves_one_closed_pass(
        config: Config, tmdbs: list[Tmdb]) -> None:
    env = _env(ISLS_MQTT_URL=config.mqtt.url, ISLS_INFLUX_URL=config.influx.url,
               ISLS_INFLUX_DB=config.influx.database, ISLS_STATE_DIR=str(config.state_dir))
    archive = config.archive_dir

    def publish() -> None:
        service = SimulatorService(PacketGenerator(make_model("lander", 1), tmdbs[0]),
                                   config.mqtt, speed=5.0, publish_interval=0.05)
        asyncio.run(service.run(asyncio.Event(), 1.5))

    def recorded() -> int:
        return sum(p.records for p in list_passes(archive))

    ingest = start_isls(["ingest"], env)
    try:
        publish()
        wait_for(lambda: recorded() >= 20, 20, message="the first ingest to archive")
    finally:
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
    (interrupted,) = list_passes(archive)
    assert not interrupted.closed
    before = interrupted.records
    listing = _isls(["passes"], env)
    assert listing.stdout.splitlines()[1].endswith("interrupted"), listing.stdout
    ingest = start_isls(["ingest"], env)
    try:
        publish()
        wait_for(lambda: recorded() >= before + 20, 20, message="the second ingest to archive")
    finally:
        ingest.send_signal(signal.SIGINT)
        assert ingest.wait(30) == 0
    listing = _isls(["passes"], env)
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith(interrupted.id) and rows[0].endswith("closed")
    (whole,) = list_passes(archive)
    assert whole.records >= before + 20 and whole.gaps == 0


# ---------------------------------------------------------------------------- broker


class _Lines:
    """The lines a child process writes to a pipe, read as they come (unbuffered, so a
    line is never held back where ``select`` cannot see it)."""

    def __init__(self, pipe: IO[str]) -> None:
        self.fd = pipe.fileno()
        self.pending = b""
        self.seen: list[str] = []

    def until(self, text: str, timeout: float = 30.0) -> str:
        """The next line holding ``text``; fails at the deadline or at end of file."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                self.seen.append(line.decode())
                if text in self.seen[-1]:
                    return self.seen[-1]
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"no {text!r} within {timeout:.0f} s: {self.seen}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"ended before {text!r}: {self.seen}")
            self.pending += chunk

    def rest(self) -> list[str]:
        """Every line after the process ended."""
        while chunk := os.read(self.fd, 65536):
            self.pending += chunk
        return self.seen + self.pending.decode().splitlines()


def test_an_unreachable_broker_is_one_line_for_one_shot_commands(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pass_id = _record_passes(state / "archive")[0]
    port = free_port()
    env = _env(ISLS_STATE_DIR=str(state), ISLS_MQTT_URL=f"mqtt://127.0.0.1:{port}")
    for command in (["alarms", "--once"], ["link", "status", "--once"],
                    ["alarms", "ack", "lander.x.red", "--by", "flight"],
                    ["replay", pass_id, "--speed", "max"]):
        result = _isls(command, env)
        assert result.returncode == 2, command
        line = _one_line(result.stderr)
        assert line == f"isls: cannot reach the broker at mqtt://127.0.0.1:{port}: " \
                       f"connection refused", command


@pytest.mark.parametrize("command", [["alarms"], ["link", "status"]])
def test_live_views_retry_an_unreachable_broker_until_ctrl_c(tmp_path: Path,
                                                             command: list[str]) -> None:
    port = free_port()
    env = _env(ISLS_STATE_DIR=str(tmp_path / "state"),
               ISLS_MQTT_URL=f"mqtt://127.0.0.1:{port}")
    view = subprocess.Popen([*ISLS, *command], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert view.stdout is not None and view.stderr is not None
    errors, shown = _Lines(view.stderr), _Lines(view.stdout)
    broker = MosquittoServer(tmp_path / "mosquitto", port, persistence=False)
    refused = f"isls: cannot reach the broker at mqtt://127.0.0.1:{port}: connection refused"
    try:
        assert errors.until("retrying in") == f"{refused}; retrying in 1 s"
        broker.start()  # the broker comes back: the view follows it
        shown.until("no active alarms" if command == ["alarms"] else "no serial links")
        retries = len(errors.seen)
        broker.stop()  # and goes away again: said in one line, then retried
        lost = errors.until("retrying in")
        assert len(errors.seen) == retries + 1 and lost.startswith(
            f"isls: cannot reach the broker at mqtt://127.0.0.1:{port}: ")
        assert lost.endswith("; retrying in 1 s") and "connection refused" not in lost
        assert errors.until("retrying in") == f"{refused}; retrying in 2 s"
    finally:
        view.send_signal(signal.SIGINT)  # Ctrl-C, during the wait before retrying
        try:
            view.wait(30)
        finally:
            broker.stop()
    assert view.returncode == 130
    lines = errors.rest()
    assert "Traceback" not in "\n".join(lines), lines
    assert all(line.startswith("isls: cannot reach the broker at") for line in lines), lines


def _passwords(config: Config, tmdbs: list[Tmdb]) -> dict[str, str]:
    return {"ISLS_MQTT_PASSWORD_" + a.name.upper().replace("-", "_"): f"pw-{a.name}"
            for a in accounts(config, tmdbs)}


@pytest.fixture(scope="module")
def locked_broker(tmp_path_factory: pytest.TempPathFactory,
                  tmdbs: list[Tmdb]) -> Iterator[MosquittoServer]:
    """A Mosquitto with the generated accounts and ACL: no anonymous clients."""
    directory = tmp_path_factory.mktemp("locked")
    port = free_port()
    config = load_config(CONFIG, {"ISLS_STATE_DIR": str(directory / "state"),
                                  "ISLS_MQTT_URL": f"mqtt://127.0.0.1:{port}"})
    env = {**_passwords(config, tmdbs), "ISLS_MQTT_PARTNER_PORT": str(free_port())}
    security = write_broker_security(directory / "security", config, tmdbs, env)
    with MosquittoServer(directory / "mosquitto", port, security=security) as broker:
        yield broker


def test_a_wrong_password_is_one_line_and_not_retried(locked_broker: MosquittoServer,
                                                      tmp_path: Path) -> None:
    state = tmp_path / "state"
    pass_id = _record_passes(state / "archive")[0]
    url = f"mqtt://{OPERATOR}:wrong@127.0.0.1:{locked_broker.port}"
    env = _env(ISLS_STATE_DIR=str(state), ISLS_MQTT_URL=url)
    # The live views too: retrying cannot mend a password.
    for command in (["alarms"], ["link", "status"], ["alarms", "--once"],
                    ["alarms", "shelve", "lander.x.red", "--by", "flight"],
                    ["replay", pass_id]):
        result = _isls(command, env)
        assert result.returncode == 2, command
        line = _one_line(result.stderr)
        assert line.startswith(f"isls: the broker at mqtt://{OPERATOR}@127.0.0.1:"
                               f"{locked_broker.port} refused the connection: not authorized")
        assert "wrong" not in line  # the password is never shown


def test_an_unauthorised_alarm_command_says_not_authorized(locked_broker: MosquittoServer,
                                                          tmp_path: Path) -> None:
    # The ingest's account, as a user who took the wrong credentials would: it may read
    # alarm commands, not send them.
    account = INGEST
    url = f"mqtt://{account}:pw-{account}@127.0.0.1:{locked_broker.port}"
    env = _env(ISLS_STATE_DIR=str(tmp_path / "state"), ISLS_MQTT_URL=url)
    began = time.monotonic()
    result = _isls(["alarms", "ack", "orbiter.altitude.red", "--by", "flight"], env)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line == (f"isls: the broker refused the command on isls/alarms/command: not "
                    f"authorized (account '{account}' may not publish there; operators use "
                    f"the isls-operator account)")
    assert time.monotonic() - began < 10  # the refusal, not the 10 s wait for an answer
    # The operator account may: the command goes out, and with no ingest holding the
    # alarm it is the wait for an answer that ends it (shortened here).
    from control_center.operations.alarm_console import command_alarm

    settings = load_config(CONFIG, {"ISLS_MQTT_URL": f"mqtt://{OPERATOR}:pw-{OPERATOR}"
                                    f"@127.0.0.1:{locked_broker.port}"}).mqtt
    with pytest.raises(IslsError, match="was not acknowledged within 1 s"):
        asyncio.run(command_alarm(settings, "ack", "orbiter.altitude.red", "flight", "",
                                  timeout=1.0))


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`isls passes | head -1`: the pipe closes before isls has written all; that is the
    reader's choice, not an error worth a traceback."""
    state = tmp_path / "state"
    _record_passes(state / "archive")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before isls writes a line: every write fails
    try:
        result = subprocess.run([*ISLS, "passes"], env=_env(ISLS_STATE_DIR=str(state)),
                                stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr == ""
    assert result.returncode == 128 + signal.SIGPIPE
