"""The README's module map names every module, so a newcomer reading it misses none (and
a module added without its line fails here)."""

from __future__ import annotations

import re

from tests.conftest import PROJECT

PACKAGES = ("control_center", "drivers", "simulators")


def _module_map() -> str:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Module map")
    return readme[start:readme.index("\n## ", start)]


def test_the_module_map_names_every_module() -> None:
    text = _module_map()
    missing = []
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            folder = path.parent.relative_to(PROJECT).as_posix()
            # Its folder's bullet names it: "- `control_center/storage/` — `writer.py` …"
            bullet = re.search(rf"^- `{re.escape(folder)}/` — (.*?)(?=^- |\Z)", text,
                               re.M | re.S)
            if bullet is None or f"`{path.name}`" not in bullet.group(1):
                missing.append(path.relative_to(PROJECT).as_posix())
    assert not missing, f"README 'Module map' does not name: {', '.join(missing)}"
