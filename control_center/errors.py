"""The project's exception hierarchy.

Every error a user can see derives from :class:`IslsError`; its message names the
thing, the place and the fix, so the CLI prints it as one line and exits non-zero
instead of showing a traceback.
"""

from __future__ import annotations


class IslsError(Exception):
    """Base of every error the control center reports to a user."""


class Problems:
    """Every problem found in one file, each as ``<file>: <where>: <reason>``: collected
    while a file is read so that the user fixes them all in one go, then raised together
    (:class:`TmdbError`, :class:`LayoutError`)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, where: str, reason: str) -> None:
        self.problems.append(f"{self.source}: {where}: {reason}")


class ConfigError(IslsError):
    """A configuration file or environment variable is invalid."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


class TmdbError(IslsError):
    """A telemetry database file is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LayoutError(TmdbError):
    """A mission dashboard layout (``config/dashboards/*.yaml``) is malformed, or names what
    its spacecraft's TMDB does not have.

    A :class:`TmdbError` because a layout is checked together with its telemetry
    database (``isls tmdb check``), and every command reports its problems as it
    reports the TMDB's: one line each."""


class ServerError(IslsError):
    """A broker or database could not be started or reached."""


class PacketError(IslsError):
    """A packet could not be decoded; the ingest counts and skips it."""
