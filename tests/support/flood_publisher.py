"""A flood of MQTT messages from a separate process, as fast as one client can send.

    python tests/support/flood_publisher.py PORT TOPIC FILE

FILE holds the payloads, each preceded by its length (4 octets, big endian). QoS 1,
500 publishes in flight at a time; exits 0 once the broker has acknowledged every one.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

import aiomqtt


async def flood(port: int, topic: str, data: bytes) -> None:
    payloads = []
    position = 0
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        payloads.append(data[position + 4:position + 4 + length])
        position += 4 + length
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-flood",
                              protocol=aiomqtt.ProtocolVersion.V5, timeout=60) as client:
        for start in range(0, len(payloads), 500):
            await asyncio.gather(*(client.publish(topic, payload, qos=1)
                                   for payload in payloads[start:start + 500]))


def main() -> int:
    asyncio.run(flood(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
