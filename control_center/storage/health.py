"""The writer's health, as an operator sees it: the counters of :class:`WriterStats` and
the alarms in the log, each raised once when trouble starts and cleared once when it
ends (InfluxDB trouble, a refused spool disk, an internal error in a writer task)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from control_center.config import InfluxSettings
from control_center.storage.answers import Answer
from control_center.storage.spool import DeadLetters, Spool, describe

log = logging.getLogger("isls.storage")


@dataclass(slots=True)
class WriterStats:
    """The writer's counters: the ingest's health line, its stop summary and ``isls
    doctor`` read them; :meth:`problems` picks the ones that say something went wrong."""

    lines_written: int = 0
    values_written: int = 0
    batches_written: int = 0
    retries: int = 0
    rejected_lines: int = 0  # lines InfluxDB refused (unparsable, type conflict, too big)
    dead_letter_lines: int = 0  # of those, kept in the dead-letter files
    dead_letters_discarded: int = 0  # deleted with the oldest dead-letter file (bound)
    pending_lines: int = 0
    last_error: str = ""
    trouble: str = ""  # the kind of InfluxDB trouble now ("auth", …); "" while it works
    auth_failures: int = 0  # 401/403 answers: credentials or privileges
    missing_database: int = 0  # 404 database not found (re-created, then retried)
    too_large: int = 0  # 413 answers (the batch was halved)
    server_errors: int = 0  # 5xx and other unexpected answers
    unreachable: int = 0  # no answer: connection refused, reset, timeout
    task_failures: int = 0  # unexpected exceptions in the writer's own tasks
    spooled_lines: int = 0  # written to the disk spool while InfluxDB failed
    backfilled_lines: int = 0  # taken from the spool into InfluxDB
    spool_lines: int = 0  # in the spool now
    spool_bytes: int = 0
    spool_full: bool = False  # at its size limit now
    spool_failed: bool = False  # the disk refused the last spool or dead-letter write
    spool_error: str = ""  # why, e.g. "No space left on device: /…/spool/…"
    spool_write_failures: int = 0

    def problems(self) -> dict[str, int]:
        """The counters that say something went wrong (empty when nothing did): for an
        exit line or a health check, so a run with refused lines never reads clean."""
        names = ("rejected_lines", "dead_letters_discarded", "auth_failures",
                 "missing_database", "too_large", "server_errors", "unreachable",
                 "task_failures", "spool_write_failures")
        found = {name: int(getattr(self, name)) for name in names if getattr(self, name)}
        if self.spool_full:
            found["spool_full"] = 1
        if self.spool_failed:
            found["spool_failed"] = 1
        return found


_TROUBLE_COUNTERS = {"auth": "auth_failures", "missing_database": "missing_database",
                     "server": "server_errors", "unreachable": "unreachable"}


class WriterHealth:
    """Turns what happens to the writer into :class:`WriterStats` and log lines.

    ``disk_directory`` is where the spool and dead letters are written, named when the
    disk refuses them."""

    def __init__(self, stats: WriterStats, settings: InfluxSettings,
                 disk_directory: str) -> None:
        self.stats = stats
        self.settings = settings
        self.disk_directory = disk_directory

    # ---------------------------------------------------------------- InfluxDB

    def stored(self, lines: int, values: int) -> None:
        """InfluxDB took ``lines`` lines of live telemetry: any trouble is over."""
        self.stats.lines_written += lines
        self.stats.values_written += values
        self.stats.batches_written += 1
        if self.stats.trouble:
            log.info("InfluxDB takes writes again (after %s trouble)", self.stats.trouble)
            self.stats.trouble = ""

    def backfilled(self, lines: int, values: int) -> None:
        """InfluxDB took ``lines`` lines from the spool."""
        self.stats.backfilled_lines += lines
        self.stored(lines, values)

    def trouble(self, answer: Answer) -> None:
        """An answer that is not the data's fault: counted, and alarmed when it starts."""
        counter = _TROUBLE_COUNTERS.get(answer.kind)
        if counter is not None:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.stats.last_error = self._explain(answer)
        if self.stats.trouble != answer.kind:
            self.stats.trouble = answer.kind
            log.error("ALARM %s", self.stats.last_error)

    def _explain(self, answer: Answer) -> str:
        where = f"InfluxDB at {self.settings.url}"
        database = self.settings.database
        match answer.kind:
            case "auth":
                account = self.settings.username or ("a token" if self.settings.token
                                                     else "no account")
                return (f"{where} refused writes to {database!r} by {account} "
                        f"({answer.detail}): check ISLS_INFLUX_USER / ISLS_INFLUX_PASSWORD "
                        f"/ ISLS_INFLUX_TOKEN and the account's WRITE privilege; retrying, "
                        f"nothing is dropped")
            case "missing_database":
                return (f"{where} has no database {database!r} ({answer.detail}); creating "
                        f"it again and retrying")
            case "unreachable":
                return f"{where} unreachable ({answer.message}); retrying"
            case "server":
                return f"{where} failed the write ({answer.detail}); retrying"
            case _:
                return answer.message

    def dead_lettered(self, groups: Sequence[tuple[str, Sequence[bytes]]],
                      store: DeadLetters | None) -> None:
        """Lines InfluxDB proved bad were given up (kept in ``store`` if there is one)."""
        count = sum(len(lines) for _, lines in groups)
        if store is not None:
            self.stats.dead_letter_lines += count
            self.stats.dead_letters_discarded = store.discarded_lines
        where = (f"kept in {store.directory}" if store is not None
                 else "given up (no dead-letter store)")
        for reason, lines in groups[:5]:
            log.error("%s: %d %s %s; the first: %.200r", reason, len(lines),
                      "line" if len(lines) == 1 else "lines", where, lines[0])
        if len(groups) > 5:
            log.error("… and %d more lines refused for other reasons, %s",
                      sum(len(lines) for _, lines in groups[5:]), where)
        self.stats.rejected_lines += count
        self.stats.last_error = groups[0][0]

    # ---------------------------------------------------------------- the disk

    def disk_refused(self, error: OSError) -> Answer:
        """The disk refused a spool or dead-letter write: alarm once, count every time."""
        self.stats.spool_write_failures += 1
        message = f"cannot write under {self.disk_directory}: {describe(error)}"
        self.stats.spool_error = message
        self.stats.last_error = message
        if not self.stats.spool_failed:
            self.stats.spool_failed = True
            log.error("ALARM %s: telemetry is no longer acknowledged; the broker holds the "
                      "backlog until InfluxDB takes writes or the disk is fixed", message)
        return Answer("disk", 0, message)

    def disk_works(self) -> None:
        if self.stats.spool_failed:
            log.info("the spool under %s takes writes again", self.disk_directory)
            self.stats.spool_failed = False
            self.stats.spool_error = ""

    def spool_now(self, spool: Spool) -> None:
        """Copy what the spool holds now into the stats."""
        self.stats.spool_lines, self.stats.spool_bytes = spool.lines, spool.bytes

    # ---------------------------------------------------------------- the writer's tasks

    def watch(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start a writer task whose end is looked at (:meth:`observe`)."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self.observe)
        return task

    def observe(self, task: asyncio.Task[None]) -> None:
        """Every task's end is looked at: an exception becomes a log line and a count,
        never "Task exception was never retrieved"."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.internal(error, task.get_name())

    def internal(self, error: BaseException, where: str) -> Answer:
        self.stats.task_failures += 1
        message = f"internal error in {where}: {type(error).__name__}: {error}"
        self.stats.last_error = message
        log.error("%s (the writer carries on)", message,
                  exc_info=(type(error), error, error.__traceback__))
        return Answer("internal", 0, message)

    def summary(self, dead_letters: DeadLetters | None) -> None:
        """At close: one warning naming every problem counter, if any."""
        problems = self.stats.problems()
        if problems:
            log.warning("InfluxDB writer: %s%s", ", ".join(f"{k} {v}" for k, v in
                                                         problems.items()),
                        f" (refused lines kept in {dead_letters.directory})"
                        if dead_letters is not None and self.stats.dead_letter_lines
                        else "")
