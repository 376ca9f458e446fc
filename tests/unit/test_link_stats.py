"""Typed link statistics (drivers/link.py): what a serial link reports, the JSON on
``isls/<spacecraft>/link`` and the InfluxDB ``link`` line, byte for byte."""

from __future__ import annotations

import dataclasses
import json

import pytest

from control_center.config import LinkSettings
from control_center.operations.link_status import render
from control_center.storage.contract import link_line
from drivers.link import LinkStatus
from drivers.serial import SerialLinkSource

NOW_NS = 1_800_000_000_000_000_000


def _tm_status(**changes: object) -> LinkStatus:
    status = LinkStatus(
        link="bench", spacecraft="orbiter", device="/dev/ttyUSB0", framing="tm",
        connected=True, reopens=1, octets=13380, bit_rate=107040.0, unrouted_packets=2,
        locked=True, frames_good=12, frames_bad=1, frames_gap=3, sync_losses=0, packets=40,
        packets_dropped=4, last_frame_ns=NOW_NS - 80_000_000)
    return dataclasses.replace(status, **changes)  # type: ignore[arg-type]


async def _no_sink(spacecraft: str, packets: bytes, receive_ns: int) -> None:
    return None


def test_link_json_keeps_its_keys_and_their_order() -> None:
    """The retained message is what the dict-based version published."""
    status = _tm_status()
    assert status.to_json() == (
        b'{"link": "bench", "spacecraft": "orbiter", "device": "/dev/ttyUSB0", '
        b'"framing": "tm", "connected": true, "reopens": 1, "octets": 13380, '
        b'"bit_rate": 107040.0, "unrouted_packets": 2, "locked": true, "frames_good": 12, '
        b'"frames_bad": 1, "frames_gap": 3, "sync_losses": 0, "packets": 40, '
        b'"packets_dropped": 4, "last_frame_ns": 1799999999920000000}')
    assert LinkStatus.from_json(status.to_json()) == status
    cobs = _tm_status(framing="cobs", last_frame_ns=None)
    assert json.loads(cobs.to_json())["last_frame_ns"] is None
    assert LinkStatus.from_json(cobs.to_json()) == cobs


def test_link_line_fields_and_frame_age() -> None:
    line = link_line(_tm_status(link="bench 2"), NOW_NS)
    assert line == (
        "link,link=bench\\ 2,spacecraft=orbiter connected=true,locked=true,frames_good=12i,"
        "frames_bad=1i,frames_gap=3i,sync_losses=0i,packets=40i,packets_dropped=4i,"
        "octets=13380i,bit_rate=107040.0,reopens=1i,unrouted_packets=2i,"
        f"last_frame_age=0.08 {NOW_NS}\n")
    # No frame times (COBS): no age; a frame time ahead of the clock: age 0.
    assert "last_frame_age" not in link_line(_tm_status(last_frame_ns=None), NOW_NS)
    assert "last_frame_age=0.0 " in link_line(_tm_status(last_frame_ns=NOW_NS + 5), NOW_NS)


def test_from_json_fills_what_is_absent_and_refuses_what_is_not_a_link() -> None:
    status = LinkStatus.from_json(b'{"link": "bench", "spacecraft": "orbiter"}')
    assert (status.connected, status.frames_good, status.bit_rate, status.last_frame_ns) == \
        (False, 0, 0.0, None)
    with pytest.raises(KeyError):
        LinkStatus.from_json(b'{"link": "bench"}')
    with pytest.raises(TypeError):
        LinkStatus.from_json(b"[1, 2]")
    with pytest.raises(ValueError):
        LinkStatus.from_json(b"not json")
    with pytest.raises(ValueError):
        LinkStatus.from_json(b'{"link": "b", "spacecraft": "o", "frames_good": "many"}')


def test_serial_link_snapshot_before_any_octet() -> None:
    """A link never opened: typed figures for both framings, COBS without frame times."""
    tm = SerialLinkSource(LinkSettings("bench", "orbiter", "/dev/null"), _no_sink).snapshot()
    assert (tm.framing, tm.connected, tm.locked, tm.frames_good, tm.last_frame_ns) == \
        ("tm", False, False, 0, None)
    cobs = SerialLinkSource(LinkSettings("relay", "lander", "/dev/null", framing="cobs"),
                            _no_sink).snapshot()
    assert (cobs.framing, cobs.locked, cobs.frames_gap, cobs.sync_losses) == \
        ("cobs", False, 0, 0)
    assert isinstance(cobs.bit_rate, float)


def test_link_status_table() -> None:
    table = render({("orbiter", "bench"): _tm_status(bit_rate=2500.0),
                    ("lander", "relay"): _tm_status(link="relay", spacecraft="lander",
                                                    connected=False, last_frame_ns=None)})
    header, first, second = table.splitlines()
    assert header.split() == ["link", "spacecraft", "state", "frames", "good", "bad", "gaps",
                              "sync", "losses", "bit", "rate", "last", "frame"]
    assert first.split()[:9] == ["relay", "lander", "NO", "DEVICE", "12", "1", "3", "0",
                                 "107.0"]
    assert first.endswith("never")
    assert second.split()[:8] == ["bench", "orbiter", "LOCKED", "12", "1", "3", "0", "2.5"]
