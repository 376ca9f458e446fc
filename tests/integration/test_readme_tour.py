"""The README's five-minute tour runs as written: a doc test, so the tour cannot go stale.

Every ```` ```sh ```` block of the section ``## A five-minute tour`` (up to the next ``## ``
heading) runs, in order, in one bash session, as a newcomer types it: shell variables
and background jobs carry from one command to the next. The conventions, which the
README states in a comment at the top of the tour:

* every command must exit 0 (a command is a line, with ``\\``-continued lines joined;
  comment-only lines are skipped);
* a command ending in ``&`` runs in the background; the session waits until the
  ``"quoted text"`` of its comment appears in the output, then goes on; the tour itself
  stops it (``kill %1; wait %1``, whose status must be 0 too), and no job may be left
  running at the end;
* a ```` ```text ```` block shows output of the nearest ```` ```sh ```` block before it:
  each of its lines must appear, in order, in that block's output (stdout and stderr),
  where a number stands for any number, a run of spaces for any spaces, and ``…`` for
  anything (a line of just ``…`` stands for lines left out).

The session runs in a temporary directory holding a copy of ``config/`` (on free ports,
so a control center already running on this machine is no obstacle) and ``samples/``,
with ``ISLS_CONFIG`` pointing at the copy: the state, dashboards and reports the tour
writes stay there, and the repository is not written. ``isls`` is the virtual
environment's, found on ``PATH``. The servers are real: the tour's ``isls up`` starts them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from control_center.operations.servers import free_port
from tests.conftest import PROJECT, wait_for

README = PROJECT / "README.md"
TOUR_HEADING = "## A five-minute tour"
VENV_BIN = Path(sys.executable).parent  # the interpreter running the tests: .venv/bin
COMMAND_TIMEOUT = 60.0  # s for one command to end (the longest runs for 15 s)
BACKGROUND_TIMEOUT = 30.0  # s for a background command to say its quoted text
STOP_TIMEOUT = 15.0  # s for whatever a failed tour left running to stop on SIGTERM
MARKER = "@@tour-step@@"
TOUR_LINES = 150  # the tour stays under this many lines: the reference is in docs/
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
TOKEN = re.compile(r"(…|\s+|\d+(?:[.,:]\d+)*)")
NUMBER = r"\d+(?:[.,:]\d+)*"


# ------------------------------------------------------------------ reading the tour


@dataclass(frozen=True, slots=True)
class Command:
    text: str  # as written, continued lines joined with their backslash-newline
    background: bool = False
    wait_for: str | None = None  # background: the text to wait for in the output


@dataclass(slots=True)
class Block:
    """A ```sh block: its commands, and the output lines the README shows for it."""

    commands: list[Command]
    expected: list[str] = field(default_factory=list)


def split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)``: the comment starts at the first ``#`` outside quotes that
    begins a word, as in the shell."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index:]
    return line.rstrip(), ""


def commands(body: str) -> list[Command]:
    result: list[Command] = []
    pending = ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line + "\n"
            continue
        text, pending = pending + line, ""
        code, comment = split_comment(text)
        if not code.strip():
            continue
        if code.endswith("&") and not code.endswith("&&"):
            quoted = re.search(r'"([^"]+)"', comment)
            result.append(Command(text, background=True,
                                  wait_for=quoted.group(1) if quoted else None))
        else:
            result.append(Command(text))
    assert not pending, f"a command ends in a line continuation: {pending!r}"
    return result


def tour_section(readme: str) -> str:
    heading = re.search(rf"^{re.escape(TOUR_HEADING)}$", readme, re.M)
    assert heading is not None, f"README.md has no {TOUR_HEADING!r} section"
    end = readme.find("\n## ", heading.end())
    return readme[heading.end():] if end < 0 else readme[heading.end():end]


def tour_blocks(readme: str) -> list[Block]:
    blocks: list[Block] = []
    for match in FENCE.finditer(tour_section(readme)):
        kind, body = match.groups()
        if kind == "sh":
            blocks.append(Block(commands(body)))
        elif kind == "text":
            assert blocks, f"an output block before any command in the tour:\n{body}"
            blocks[-1].expected.extend(body.splitlines())
    return blocks


def line_pattern(expected: str) -> re.Pattern[str]:
    """A shown output line as a pattern: numbers stand for any number, "…" for anything."""
    parts = []
    for token in TOKEN.split(expected.strip()):
        if token == "…":
            parts.append(".*?")
        elif token.isspace():
            parts.append(r"\s+")
        elif token[:1].isdigit():
            parts.append(NUMBER)
        elif token:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def first_missing(expected: list[str], output: str) -> str | None:
    """The first shown line that does not appear, in order, in ``output``; None if all do."""
    lines = [line.strip() for line in output.splitlines()]
    at = 0
    for wanted in expected:
        if wanted.strip() in ("", "…"):
            continue
        pattern = line_pattern(wanted)
        found = next((i for i in range(at, len(lines)) if pattern.fullmatch(lines[i])), None)
        if found is None:
            return wanted
        at = found + 1
    return None


# ------------------------------------------------------------------ running it


class Session:
    """One bash shell, fed one command at a time; everything it prints goes to a file."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        read_end, self._input = os.pipe()
        with log.open("wb") as out:
            # bash reads its commands from the pipe as they come; the commands' own
            # stdin is /dev/null, as under a CI runner.
            self.process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", f"/dev/fd/{read_end}"], pass_fds=(read_end,),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                env=env, start_new_session=True)
        os.close(read_end)
        self.steps = 0

    def output(self, since: int = 0) -> str:
        return self.log.read_bytes()[since:].decode("utf-8", "replace")

    def size(self) -> int:
        return self.log.stat().st_size

    def _send(self, text: str) -> None:
        os.write(self._input, text.encode("utf-8"))

    def run(self, command: Command) -> str:
        """Run ``command``; its output (and that of background jobs meanwhile). Fails the
        test when it exits non-zero, or never says what the README waits for."""
        start = self.size()
        if command.background:
            self._send(command.text + "\n")
            if command.wait_for is not None:
                text = command.wait_for
                wait_for(lambda: text in self.output(start) or self.process.poll() is not None,
                         BACKGROUND_TIMEOUT, message=f"{text!r} from `{command.text}`")
            return self.output(start)
        self.steps += 1
        marker = re.compile(rf"^{MARKER} {self.steps} (\d+)$", re.M)
        self._send(f"{command.text}\nprintf '\\n{MARKER} %d %d\\n' {self.steps} $?\n")
        wait_for(lambda: marker.search(self.output(start)) is not None
                 or self.process.poll() is not None,
                 COMMAND_TIMEOUT, message=f"`{command.text}` to end")
        output = self.output(start)
        found = marker.search(output)
        assert found is not None, f"the shell ended during `{command.text}`:\n{output}"
        status = int(found.group(1))
        output = output[:found.start()]
        assert status == 0, f"`{command.text}` exited {status}:\n{output}"
        return output

    def close(self) -> None:
        """End the shell; stop (SIGTERM, then SIGKILL) whatever it left running."""
        with contextlib.suppress(OSError):
            os.close(self._input)
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _group_alive(group):
            self.process.poll()
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait(5)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def tour_directory(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory with copies of ``config/`` (on free ports) and ``samples/``, and the
    environment that runs the tour there."""
    root = tmp_path / "clone"
    shutil.copytree(PROJECT / "config", root / "config")
    shutil.copytree(PROJECT / "samples", root / "samples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "config" / "isls.toml"
    text = config.read_text(encoding="utf-8")
    for shipped in ("port = 18830", "port = 18086"):
        assert f"\n{shipped}\n" in text, f"config/isls.toml no longer has {shipped!r}"
        text = text.replace(f"\n{shipped}\n", f"\nport = {free_port()}\n")
    config.write_text(text, encoding="utf-8")
    assert (VENV_BIN / "isls").is_file(), f"no isls in {VENV_BIN}: run `make setup`"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ISLS_") and k != "GRAFANA_TOKEN"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["ISLS_CONFIG"] = str(config)
    return root, env


@contextlib.contextmanager
def session(tmp_path: Path) -> Iterator[Session]:
    root, env = tour_directory(tmp_path)
    shell = Session(root, env, tmp_path / "tour.log")
    try:
        yield shell
    finally:
        shell.close()


def run_tour(readme: str, tmp_path: Path) -> None:
    blocks = tour_blocks(readme)
    assert blocks, "the tour has no ```sh block"
    with session(tmp_path) as shell:
        for block in blocks:
            output = "".join(shell.run(command) for command in block.commands)
            missing = first_missing(block.expected, output)
            assert missing is None, (f"the README shows {missing.strip()!r} after "
                                     f"`{block.commands[-1].text}`; the output was:\n{output}")
        left = shell.run(Command("jobs -p | wc -l"))
        assert left.split()[-1] == "0", "the tour leaves a background job running"


# ------------------------------------------------------------------ the tests


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    started = time.monotonic()
    run_tour(README.read_text(encoding="utf-8"), tmp_path)
    # The budget of the whole tour on 2 cores is 90 s; printed by pytest -s, never
    # asserted (a shared machine is not a benchmark).
    print(f"tour ran in {time.monotonic() - started:.1f} s")


BROKEN_TOUR = f"""# A README
{TOUR_HEADING}

```sh
isls tmdb check
isls passes --no-such-option      # a command that broke
```

## Next
"""

WRONG_OUTPUT_TOUR = f"""# A README
{TOUR_HEADING}

```sh
isls tmdb check
```

```text
…
…/config/tmdb/lander.yaml: ok: spacecraft lander, 3 packets, 34 parameters
…/config/tmdb/orbiter.yaml: ok: spacecraft orbiter, 4 packets, 34 parameters
…/config/tmdb/lander.yaml: ok: spacecraft lander, 3 packets, 34 parameters
```

## Next
"""


def test_the_tour_stays_short() -> None:
    lines = len(tour_section(README.read_text(encoding="utf-8")).splitlines())
    assert lines < TOUR_LINES, f"the README's tour has {lines} lines; move detail to docs/"


def test_a_tour_command_that_fails_fails_the_doc_test(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"isls passes --no-such-option.*exited 2"):
        run_tour(BROKEN_TOUR, tmp_path)


def test_output_the_readme_shows_but_the_command_does_not_print_fails(tmp_path: Path) -> None:
    # Each tmdb line appears once: shown twice, the second lander line is not there.
    with pytest.raises(AssertionError, match="the README shows"):
        run_tour(WRONG_OUTPUT_TOUR, tmp_path)


def test_the_tour_conventions_read_as_the_readme_states_them() -> None:
    block = tour_blocks(f"""{TOUR_HEADING}
```sh
# a comment line
isls up --no-sim > /dev/null &   # go on once it logs "ingest subscribed"
PASS=$(isls passes | tail -1 | cut -d' ' -f1)   # the "latest" pass
isls replay $PASS \\
  --speed max
kill %1; wait %1
```
prints
```text
replayed 84 records …
```
""")[0]
    assert block.commands == [
        Command('isls up --no-sim > /dev/null &   # go on once it logs "ingest subscribed"',
                background=True, wait_for="ingest subscribed"),
        Command("PASS=$(isls passes | tail -1 | cut -d' ' -f1)   # the \"latest\" pass"),
        Command("isls replay $PASS \\\n  --speed max"),
        Command("kill %1; wait %1"),
    ]
    assert block.expected == ["replayed 84 records …"]
    assert first_missing(block.expected, "x\nreplayed 1,380 records in 0.4 s\n") is None
    assert first_missing(block.expected, "replayed some records\n") == "replayed 84 records …"
