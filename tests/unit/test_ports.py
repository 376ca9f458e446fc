"""Free ports (control_center/operations/ports.py): from outside the kernel's ephemeral
range, never one that something on the machine holds, never the same one twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from control_center.operations import ports
from control_center.operations.ports import ephemeral_range, free_port, port_pool


def test_ports_come_from_outside_the_ephemeral_range_and_are_never_repeated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Linux's default range, whatever this machine's: the pool is 20000-32767.
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (32768, 60999))
    chosen = [free_port() for _ in range(200)]
    assert len(set(chosen)) == len(chosen)
    for port in chosen:
        assert 20000 <= port < 32768  # the kernel hands the range to outgoing connections


def test_a_range_that_leaves_no_pool_falls_back_to_reserved_kernel_ports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65000))
    chosen = [free_port() for _ in range(100)]
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= ports._reserved


def test_the_pool_lies_on_the_larger_side_of_the_ephemeral_range() -> None:
    assert port_pool((32768, 60999)) == range(20000, 32768)
    assert port_pool((10000, 40000)) == range(40001, 65536)
    assert len(port_pool((1024, 65000))) < ports.MINIMUM_POOL  # then the kernel chooses


def test_an_unreadable_range_is_linuxs_default(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("not numbers\n")
    assert ephemeral_range(tmp_path / "range") == (32768, 60999)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    (tmp_path / "range").write_text("15000\t59999\n")
    assert ephemeral_range(tmp_path / "range") == (15000, 59999)


def test_a_port_that_is_listened_on_or_connected_from_is_not_bindable() -> None:
    port = free_port()
    assert ports._bindable(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not ports._bindable(port)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client_port = client.getsockname()[1]
            # An outgoing connection's source port blocks a listener there too: the
            # race that failed CI when free ports came from the ephemeral range.
            assert not ports._bindable(client_port)
