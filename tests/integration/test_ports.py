"""Two processes choosing free ports at once never get the same one: each reserves its
ports by a record lock on a shared file (control_center/operations/ports.py)."""

from __future__ import annotations

import subprocess
import sys

from control_center.operations.servers import free_port

CHOOSER = """
import sys
from control_center.operations.servers import free_port
print(" ".join(str(free_port()) for _ in range(400)), flush=True)
sys.stdin.readline()  # hold the reservations until the test has chosen its own
"""


def test_another_process_is_never_given_a_port_this_one_reserved() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHOOSER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        theirs = {int(port) for port in child.stdout.readline().split()}
        ours = {free_port() for _ in range(400)}
        child.stdin.write("\n")
        child.stdin.flush()
    finally:
        child.wait(timeout=30)
    assert len(theirs) == 400 and len(ours) == 400
    # 400 and 400 random picks from a pool of about 12,800 would share a dozen ports.
    assert not theirs & ours
