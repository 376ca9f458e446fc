"""What a Mosquitto SIGKILL loses of acknowledged QoS 1 telemetry, and what saving costs.

    python bench/broker_persistence.py [--messages 8000] [--size 2048] [--kill-after 0,2]
                                       [--online] [--json bench/results/broker.json]

For each persistence setting it starts a Mosquitto of its own (the config
``MosquittoServer`` writes, only the autosave lines vary) on a free loopback port, and:

1. a persistent subscriber (clean start off, session expiry 1 h, as the ingest) subscribes
   to ``isls/bench/tm/raw`` at QoS 1 and disconnects: the broker must queue for it;
2. one publisher publishes ``--messages`` messages of ``--size`` octets at QoS 1, each
   awaited until its PUBACK (as a simulator or a link does), timed per 1,000 messages:
   the cost of saving grows with the backlog the broker holds;
3. ``--kill-after`` seconds after the last PUBACK, the broker is killed with SIGKILL,
   started again on the same port and persistence directory, and the subscriber comes
   back to count what survived.

Settings compared: ``autosave_interval 10`` (the generated config before issue 13: a
save every 10 s), ``autosave_on_changes true`` with ``autosave_interval`` 1, 10 and 100
(Mosquitto 2.0.11 then counts queued messages, subscription changes and retained
messages, and saves the whole in-memory store once that count reaches the interval, at
the end of the event-loop pass that reached it), and ``persistence false`` for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from control_center.config import MqttSettings  # noqa: E402
from control_center.operations.servers import MosquittoServer, free_port  # noqa: E402
from drivers.mqtt import make_client  # noqa: E402

TOPIC = "isls/bench/tm/raw"
SUBSCRIBER = "bench-persistent-subscriber"

# name: (persistence, autosave_on_changes, autosave_interval)
SETTINGS: dict[str, tuple[bool, bool, int]] = {
    "interval 10 s (before)": (True, False, 10),
    "on changes, 100": (True, True, 100),
    "on changes, 10": (True, True, 10),
    "on changes, 1": (True, True, 1),
    "no persistence": (False, False, 10),
}


@dataclass
class Result:
    setting: str
    messages: int
    size: int
    kill_after: float
    online: bool
    seconds: float
    messages_per_second: float
    first_1000_per_second: float
    last_1000_per_second: float
    survived: int
    lost: int
    database_bytes: int
    disk_megabytes: float  # what the broker wrote to storage while the messages came in


async def subscribe_persistent(settings: MqttSettings) -> None:
    async with make_client(settings, SUBSCRIBER, clean_start=False,
                           session_expiry=3600) as client:
        await client.subscribe(TOPIC, qos=1)


async def publish(settings: MqttSettings, count: int, size: int) -> list[float]:
    """Seconds each 1,000 messages took, each acknowledged by the broker before the
    next is sent, as the simulators publish. (Awaiting several together measured slower
    here, not faster: 1,500 in tens took 6.6 s, one by one 0.4 s; most likely the small
    writes waiting on delayed TCP acknowledgements.)"""
    padding = bytes(max(size - 8, 0))
    blocks: list[float] = []
    async with make_client(settings, "bench-publisher") as client:
        started = time.perf_counter()
        for index in range(count):
            await client.publish(TOPIC, struct.pack(">Q", index) + padding, qos=1)
            if (index + 1) % 1000 == 0 or index + 1 == count:
                now = time.perf_counter()
                blocks.append(now - started)
                started = now
    return blocks


async def collect(settings: MqttSettings, quiet: float = 2.0,
                  seen: set[int] | None = None) -> set[int]:
    """What the persistent subscriber receives until ``quiet`` seconds pass without a
    message."""
    seen = set() if seen is None else seen
    async with make_client(settings, SUBSCRIBER, clean_start=False,
                           session_expiry=3600) as client:
        while True:
            try:
                async with asyncio.timeout(quiet):
                    message = await anext(aiter(client.messages))
            except TimeoutError:
                return seen
            assert isinstance(message.payload, bytes)
            seen.add(struct.unpack(">Q", message.payload[:8])[0])


async def publish_to_live_subscriber(settings: MqttSettings, count: int, size: int,
                                     seen: set[int]) -> list[float]:
    """As ``publish``, with the subscriber connected and reading (a healthy ingest)."""
    listener = asyncio.create_task(collect(settings, quiet=3.0, seen=seen))
    await asyncio.sleep(0.5)
    blocks = await publish(settings, count, size)
    await listener
    return blocks


def run(name: str, messages: int, size: int, kill_after: float, root: Path, *,
        online: bool = False) -> Result:
    persistence, on_changes, interval = SETTINGS[name]
    directory = root / f"{name.replace(' ', '_').replace(',', '')}-{kill_after}"
    shutil.rmtree(directory, ignore_errors=True)
    broker = MosquittoServer(directory, free_port(), persistence=persistence,
                             autosave=(on_changes, interval))
    broker.start()
    settings = MqttSettings(port=broker.port)
    try:
        asyncio.run(subscribe_persistent(settings))
        assert broker.process is not None
        written_before = _written(broker.process.pid)
        survived: set[int] = set()
        if online:
            blocks = asyncio.run(publish_to_live_subscriber(settings, messages, size,
                                                            survived))
        else:
            blocks = asyncio.run(publish(settings, messages, size))
        time.sleep(kill_after)
        written = _written(broker.process.pid) - written_before
        broker.kill()  # SIGKILL
        database = directory / "mosquitto.db"
        database_bytes = database.stat().st_size if database.exists() else 0
        broker.start()
        survived = asyncio.run(collect(settings, seen=survived))
    finally:
        broker.stop()
    seconds = sum(blocks)
    per_block = [min(1000, messages - 1000 * i) / s for i, s in enumerate(blocks)]
    return Result(name, messages, size, kill_after, online, round(seconds, 2),
                  round(messages / seconds), round(per_block[0]), round(per_block[-1]),
                  len(survived), messages - len(survived), database_bytes,
                  round(written / 1e6, 1))


def _written(pid: int) -> int:
    """Octets a process has caused to be written to storage (its saves), from /proc."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--kill-after", default="0,2",
                        help="seconds between the last PUBACK and the SIGKILL, comma-separated")
    parser.add_argument("--settings", default=";".join(SETTINGS),
                        help="which settings to run, by name, separated by ';'")
    parser.add_argument("--online", action="store_true",
                        help="the subscriber stays connected and reads (a healthy ingest): "
                             "the cost of the setting when nothing has to be queued")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = [n for n in args.settings.split(";") if n]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {'; '.join(SETTINGS)}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="isls-bench-broker-") as temporary:
        for kill_after in (float(k) for k in args.kill_after.split(",")):
            for name in names:
                result = run(name, args.messages, args.size, kill_after, Path(temporary),
                             online=args.online)
                results.append(result)
                print(f"{name:<24} kill {kill_after:>3.0f} s after: "
                      f"{result.messages_per_second:>6} msg/s "
                      f"(first 1000 {result.first_1000_per_second}, last 1000 "
                      f"{result.last_1000_per_second}), lost {result.lost:>5} of "
                      f"{result.messages}, store {result.database_bytes / 1e6:.1f} MB, "
                      f"{result.disk_megabytes} MB written",
                      flush=True)
    baseline = [r for r in results if r.setting == "interval 10 s (before)"]
    if baseline:
        reference = statistics.mean(r.messages_per_second for r in baseline)
        for name in names:
            rates = [r.messages_per_second for r in results if r.setting == name]
            print(f"  {name:<24} throughput {statistics.mean(rates) / reference:.2f}x "
                  f"the 'before' setting")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


if __name__ == "__main__":
    main()
