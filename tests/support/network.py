"""Ground-network files for the tests: the TOML text of each table that
control_center/network/sites.py reads, and the file written from such tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

TMDB = Path(__file__).resolve().parents[2] / "config" / "tmdb"

Value = str | int | Path | Sequence[str] | None


def _toml(value: str | int | Path | Sequence[str]) -> str:
    """``value`` as TOML: a JSON string or list of strings is a TOML one too."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    return f"[{', '.join(json.dumps(v) for v in value)}]"


def _table(header: str, **keys: Value) -> str:
    """One ``[[header]]`` table, a blank line before it; keys given as None are left out."""
    lines = [f"[[{header}]]"] + [f"{key} = {_toml(value)}" for key, value in keys.items()
                                 if value is not None]
    return "\n" + "\n".join(lines) + "\n"


def spacecraft_toml(names: Iterable[str], *, tmdb: Path = TMDB / "lander.yaml",
                    mission: str | None = "ISLS-1", simulator: str | None = None) -> str:
    """A ``[[spacecraft]]`` table for each of ``names``, all of one database."""
    return "".join(_table("spacecraft", name=name, mission=mission, tmdb=tmdb,
                          simulator=simulator) for name in names)


def site_toml(name: str, kind: str, agency: str, mqtt_port: int,
              influx_port: int | None = None, hears: Sequence[str] = ()) -> str:
    """A ``[[site]]`` table; ``hears`` is written only when it names something."""
    return _table("site", name=name, kind=kind, agency=agency, mqtt_port=mqtt_port,
                  influx_port=influx_port, hears=hears or None)


def agreement_toml(center: str, partner: str, spacecraft: Sequence[str],
                   data: Sequence[str]) -> str:
    return _table("agreement", center=center, partner=partner, spacecraft=spacecraft,
                  data=data)


def write_network(tmp_path: Path, *tables: str, state_dir: Path | None = None) -> Path:
    """``tmp_path``/network.toml of ``tables`` in order, after a ``[network]`` table
    with ``state_dir`` if given (else the loader's default)."""
    header = "" if state_dir is None else f"[network]\nstate_dir = {_toml(state_dir)}\n"
    path = tmp_path / "network.toml"
    path.write_text(header + "".join(tables), encoding="utf-8")
    return path
