"""Reference for the ingest benchmarks: HARDWARIO's general-purpose MQTT→InfluxDB bridge.

``mqtt2influxdb`` 1.5.2 (PyPI; its last release for InfluxDB 1.x) is what a ground station
could run instead of ``isls`` ingest. This module installs it into a virtualenv of its
own (it pins old libraries, so never the project's), writes its YAML config and runs it
as a child process against the benchmark's Mosquitto and influxd on 127.0.0.1.

What its source (``mqtt2influxdb/mqtt2influxdb.py``) does, and so what it can be fair at:

* it subscribes with QoS 0 (``client.subscribe(topic)``, paho's default) on a clean
  session: whatever the broker holds for it when it reconnects is lost;
* it writes ONE HTTP ``POST /write`` per MQTT message (``write_points([record])``),
  synchronously in paho's network thread: no batching, no option for it;
* the point time is ``datetime.utcnow()`` at receipt, cut to whole seconds; nothing in
  the config can take it from the message. Points of one series within one second would
  overwrite each other, so :func:`write_bridge_config` adds the message's ``time`` as a
  tag (``time_tag``): every message becomes its own series (one point each), and the
  true time is kept, as text, in that tag. Fine for a benchmark, ruinous for series
  cardinality in real use;
* its MQTT keepalive is hard-coded to 10 s and it sends nothing else (QoS 0: no PUBACK):
  a PINGRESP queued behind more than ~10 s of its work arrives too late, paho drops the
  connection, and the clean session loses the broker's backlog. Measured here (2 cores,
  influxd alongside): ~250-380 points/s; a burst of 5,000 lost 10-20 %, while publishing
  at 200-280 msg/s stored all. Pace the publisher below its rate to compare stored data;
* an HTTP error from InfluxDB raises out of paho's loop and the process exits (``-d``
  only waits 30 s before exiting), so callers should check the process is still alive.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from control_center.operations.servers import stop_child

# The tool calls ``paho.mqtt.client.Client()`` with v1 callbacks, written for paho 1.x,
# but requires only ``paho-mqtt>=1.0``: paho 2.0.0 made the callback API version a
# required argument (TypeError at start), 2.1+ default to the deprecated v1 API (works
# with 2.2.0, for now). Pinned to the 1.x it was built for. The other requirements
# (influxdb 5.3.2, jsonpath-ng, schema, pycron, ...) run on Python 3.11 unpinned.
REQUIREMENTS = ("mqtt2influxdb==1.5.2", "paho-mqtt>=1.6,<2")
STAMP = ".isls-bench-installed"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def ensure_bridge(venv: Path) -> Path:
    """Install the bridge into ``venv`` (once) and return its console script."""
    script = venv / "bin" / "mqtt2influxdb"
    stamp = venv / STAMP
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if script.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return script
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *REQUIREMENTS], check=True)
    if not script.is_file():
        raise RuntimeError(f"pip installed {REQUIREMENTS[0]} but {script} is missing")
    stamp.write_text(wanted)
    return script


def write_bridge_config(path: Path, *, mqtt_port: int, influx_port: int, database: str,
                        routes: dict[str, str], fields: list[str],
                        tags: dict[str, str], time_tag: str | None = "msg_time") -> Path:
    """Write the bridge's YAML: each JSON message on a topic of ``routes`` → one point in
    the measurement it maps to (a measurement per benchmark step keeps counts apart).

    Field ``name`` is the message's ``$.payload.name``; ``tags`` are constants. The tool
    stamps receipt time (whole seconds), so ``time_tag`` (unless None) names a tag that
    holds the message's ``$.payload.time`` to keep points distinct (module docstring).
    """
    for name in [*fields, *tags, *([time_tag] if time_tag else [])]:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r}: the bridge's JSONPath/expression parser needs "
                             f"plain identifiers as field and tag names")
    for value in tags.values():
        # The tool reads any value containing "$." as a JSONPath.
        if "$." in value or not value:
            raise ValueError(f"constant tag value {value!r} would not stay a constant")
    point_tags: dict[str, str] = dict(tags)
    if time_tag:
        point_tags[time_tag] = "$.payload.time"
    points: list[dict[str, object]] = []
    for topic, measurement in routes.items():
        point: dict[str, object] = {
            "measurement": measurement,
            "topic": topic,
            "fields": {name: f"$.payload.{name}" for name in fields},
        }
        if point_tags:
            point["tags"] = point_tags
        points.append(point)
    config = {
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        # It also runs CREATE DATABASE for this name at start.
        "influxdb": {"host": "127.0.0.1", "port": influx_port, "database": database},
        "points": points,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_bridge(executable: Path, config: Path, log: Path,
                 ready_timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start the bridge (output appended to ``log``); return once it has subscribed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen([str(executable), "-c", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        with log.open("rb") as read:
            read.seek(offset)
            text = read.read().decode(errors="replace")
        if proc.poll() is not None:
            raise RuntimeError(f"mqtt2influxdb exited with code {proc.returncode}:\n{text}")
        # Logged (INFO) in on_connect just before it sends SUBSCRIBE: give that a moment.
        if "INFO: subscribe " in text:
            time.sleep(0.2)
            return proc
        time.sleep(0.05)
    stop_bridge(proc)
    raise RuntimeError(f"mqtt2influxdb did not subscribe within {ready_timeout:.0f} s; "
                       f"see {log}")


def stop_bridge(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Stop the bridge and return its exit code.

    SIGINT first: its CLI catches KeyboardInterrupt and exits 0 (it buffers nothing, each
    message is written before the next is read); SIGKILL if it does not go in time.
    """
    return stop_child(proc, signum=signal.SIGINT, timeout=timeout)
