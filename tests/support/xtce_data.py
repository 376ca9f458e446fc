"""Real mission XTCE and packet files from space-packet-parser's source distribution.

`scripts/setup` fetches the sdist of the pinned version into the virtual environment
(the wheel leaves its test data out). A missing directory is a setup fault, never a
reason to skip: the tests fail and say how to fetch it.
"""

from __future__ import annotations

import sys
from pathlib import Path

SPP_DATA = Path(sys.prefix) / "share" / "space-packet-parser-6.2.0" / "tests" / "test_data"


def spp_file(relative: str) -> Path:
    """A file of space-packet-parser 6.2.0's test data (fails if setup did not fetch it)."""
    path = SPP_DATA / relative
    assert path.is_file(), (f"{path} is missing: run scripts/setup, which fetches "
                            f"space-packet-parser 6.2.0's sdist and its test data")
    return path
