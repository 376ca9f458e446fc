"""Mission dashboard layouts (``config/dashboards/*.yaml``): read once, checked against the
telemetry database, every problem of every file reported with its file, row, panel and
parameter; the mission dashboards are built from them and from nothing else."""

from __future__ import annotations

import logging
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from control_center.config import Config, load_config
from control_center.errors import LayoutError, TmdbError
from control_center.grafana.dashboards import DashboardSet, build_dashboards
from control_center.grafana.layout import (
    MissionLayout,
    PanelLayout,
    RowLayout,
    layout_dir,
    load_layouts,
)
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdbs
from tests.conftest import CONFIG, PROJECT
from tests.support.dashboards import panels

SHIPPED = PROJECT / "config" / "dashboards"


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(directory: Path, tmdbs: list[Tmdb]) -> list[str]:
    with pytest.raises(LayoutError) as error:
        load_layouts(directory, tmdbs)
    return error.value.problems


def test_the_shipped_config_finds_its_layouts_beside_it() -> None:
    assert layout_dir(CONFIG) == SHIPPED
    assert layout_dir(str(CONFIG)) == SHIPPED


def test_shipped_layouts_pass_and_are_the_mission_dashboards(
        tmdbs: list[Tmdb], built: DashboardSet) -> None:
    layouts = load_layouts(SHIPPED, tmdbs)
    assert [layout.spacecraft for layout in layouts] == ["lander", "orbiter"]
    by_uid = {d.uid: d.model for d in built.dashboards}
    for layout in layouts:
        tmdb = next(t for t in tmdbs if t.spacecraft == layout.spacecraft)
        model = by_uid[f"isls-{layout.spacecraft}"]
        expected: list[tuple[str, str, int]] = []
        for row in layout.rows:
            expected.append(("row", row.title, 24))
            expected += [("panel", panel.title, panel.width) for panel in row.panels]
        assert [("row" if p["type"] == "row" else "panel", p["title"], p["gridPos"]["w"])
                for p in panels(model)] == expected
        plotted = [p for p in panels(model) if p["type"] != "row"]
        specs = [panel for row in layout.rows for panel in row.panels]
        for panel, spec in zip(plotted, specs, strict=True):
            query = panel["targets"][0]["query"]
            assert f'FROM "{spec.packet}" ' in query, spec.title
            for name in spec.parameters:
                assert f'("{name}") AS "{name}"' in query, (spec.title, name)
            fields = {f.name: f for p in tmdb.packets if p.name == spec.packet
                      for f in p.fields}
            states = all(fields[n].type in ("enum", "boolean") for n in spec.parameters)
            assert panel["type"] == ("state-timeline" if states else "timeseries")
            assert panel["gridPos"]["h"] == 7


def test_an_unknown_parameter_names_file_row_panel_parameter_and_a_close_name(
        tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    path = write(tmp_path, "lander.yaml", """
        spacecraft: lander
        rows:
          - title: Power
            panels:
              - {title: Bus voltage, packet: lander_power, parameters: [bus_voltag], width: 8}
              - {title: Load, packet: lander_power, parameters: [load_current, flux], width: 8}
        """)
    lander = next(t for t in tmdbs if t.spacecraft == "lander")
    assert problems_of(tmp_path, tmdbs) == [
        f"{path}: row 'Power' panel 'Bus voltage': parameter 'bus_voltag' is not in packet "
        f"'lander_power' of {lander.source} (did you mean 'bus_voltage'?)",
        f"{path}: row 'Power' panel 'Load': parameter 'flux' is not in packet "
        f"'lander_power' of {lander.source}",
    ]


def test_a_parameter_of_another_packet_or_an_unknown_packet_is_named(
        tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    path = write(tmp_path, "orbiter.yaml", """
        spacecraft: orbiter
        rows:
          - title: Relay
            panels:
              - {title: Range, packet: orbiter_orbit, parameters: [relay_range]}
              - {title: Power, packet: orbiter_powr, parameters: [bus_voltage]}
        """)
    problems = problems_of(tmp_path, tmdbs)
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: row 'Relay' panel 'Range': parameter "
                                  "'relay_range' is not in packet 'orbiter_orbit' of ")
    assert problems[0].endswith("(it is in packet 'orbiter_relay')")
    assert problems[1].startswith(f"{path}: row 'Relay' panel 'Power': ")
    assert problems[1].endswith("has no packet 'orbiter_powr' (did you mean 'orbiter_power'?)")


def test_a_renamed_parameter_is_suggested_before_one_the_layout_already_shows(
        tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    """battery_soc renamed battery_state_of_charge: battery_current is closer by spelling,
    but the layout shows it already; the new name is the one it does not show yet."""
    lander = next(t for t in tmdbs if t.spacecraft == "lander")
    power = next(p for p in lander.packets if p.name == "lander_power")
    renamed = replace(power, parameters=tuple(
        replace(q, name="battery_state_of_charge") if q.name == "battery_soc" else q
        for q in power.parameters))
    copy = replace(lander, packets=tuple(renamed if p is power else p for p in lander.packets))
    shutil.copy(SHIPPED / "lander.yaml", tmp_path / "lander.yaml")
    (problem,) = problems_of(tmp_path, [copy])
    assert "row 'Power' panel 'State of charge': parameter 'battery_soc'" in problem
    assert problem.endswith("(did you mean 'battery_state_of_charge'?)")


def test_derived_parameters_are_parameters_of_their_packet(
        tmp_path: Path, offline_config: Config, tmdbs: list[Tmdb]) -> None:
    write(tmp_path, "lander.yaml", """
        spacecraft: lander
        rows:
          - title: Power
            panels:
              - {title: Bus power, packet: lander_power, parameters: [bus_power], width: 12}
        """)
    (layout,) = load_layouts(tmp_path, tmdbs)
    assert layout.rows == (RowLayout("Power", (
        PanelLayout("Bus power", "lander_power", ("bus_power",), 12),)),)
    built = build_dashboards(offline_config, tmdbs, {"lander": layout})
    model = next(d.model for d in built.dashboards if d.uid == "isls-lander")
    (panel,) = [p for p in panels(model) if p["title"] == "Bus power"]
    assert 'mean("bus_power") AS "bus_power" FROM "lander_power"' in panel["targets"][0]["query"]
    assert panel["fieldConfig"]["defaults"]["unit"] == "watt"


def test_every_problem_of_every_file_at_once(tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    first = write(tmp_path, "a.yaml", """
        spacecraft: Lander
        colour: red
        rows:
          - title: Power
            panels:
              - {title: Bus, packet: lander_power, parameters: [bus_voltage, bus_voltage],
                 width: 25}
              - {packet: lander_power, parameters: bus_voltage, heigth: 3}
          - panels: []
        """)
    second = write(tmp_path, "b.yaml", "spacecraft: lander\nrows: [\n")
    third = write(tmp_path, "c.yaml", "- just a list\n")
    problems = problems_of(tmp_path, tmdbs)
    assert problems[:8] == [
        f"{first}: top level: unknown key 'colour' (expected spacecraft, rows)",
        f"{first}: spacecraft: must be the lower_snake_case name of a spacecraft, got 'Lander'",
        f"{first}: row 'Power' panel 'Bus': parameter 'bus_voltage' is named twice",
        f"{first}: row 'Power' panel 'Bus': width must be a whole number of grid columns, "
        "1..24, got 25",
        f"{first}: row 'Power' panel #2: title must be text, got None",
        f"{first}: row 'Power' panel #2: unknown key 'heigth' (expected title, packet, "
        "parameters, width)",
        f"{first}: row 'Power' panel #2: parameters must be a non-empty list of parameter "
        "names, got 'bus_voltage'",
        f"{first}: row #2: title must be text, got None",
    ]
    assert problems[8] == f"{first}: row #2: panels must be a non-empty list of {{title, " \
                          "packet, parameters, width}"
    assert problems[9].startswith(f"{second}: (file): not valid YAML: ")
    assert problems[10:] == [
        f"{third}: (file): a layout must be a mapping with spacecraft and rows"]
    assert isinstance(LayoutError(problems), TmdbError)  # reported as the TMDB's are


def test_two_layouts_of_one_spacecraft(tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    layout = """
        spacecraft: orbiter
        rows:
          - title: Orbit
            panels:
              - {title: Altitude, packet: orbiter_orbit, parameters: [altitude]}
        """
    original = write(tmp_path, "orbiter.yaml", layout)
    copy = write(tmp_path, "orbiter-copy.yaml", layout)  # read first: files in name order
    assert problems_of(tmp_path, tmdbs) == [
        f"{original}: spacecraft: 'orbiter' already has its layout in {copy}"]


def test_a_layout_without_its_tmdb_is_read_not_checked(
        tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    write(tmp_path, "rover.yaml", """
        spacecraft: rover
        rows:
          - title: Drive
            panels:
              - {title: Wheels, packet: rover_hk, parameters: [wheel_speed]}
        """)
    (rover,) = load_layouts(tmp_path, tmdbs)
    assert rover == MissionLayout("rover", (RowLayout("Drive", (
        PanelLayout("Wheels", "rover_hk", ("wheel_speed",), 8),)),), str(tmp_path / "rover.yaml"))
    assert load_layouts(tmp_path / "none", tmdbs) == ()


def test_a_spacecraft_without_a_layout_has_no_mission_dashboard(
        offline_config: Config, tmdbs: list[Tmdb]) -> None:
    uids = {d.uid for d in build_dashboards(offline_config, tmdbs, {}).dashboards}
    assert "isls-lander" not in uids and "isls-orbiter" not in uids
    assert {"isls-lander-all", "isls-orbiter-all", "isls-overview"} <= uids


def test_the_build_refuses_a_layout_its_tmdb_fails(tmp_path: Path, tmdbs: list[Tmdb]) -> None:
    """A configuration elsewhere reads the layouts beside it; one renamed parameter in
    its copy of a TMDB fails the build instead of dropping a panel."""
    shutil.copytree(PROJECT / "config", tmp_path / "config")
    lander = tmp_path / "config" / "tmdb" / "lander.yaml"
    lander.write_text(lander.read_text().replace("name: throttle\n", "name: throttle_cmd\n"))
    config = load_config(tmp_path / "config" / "isls.toml",
                         {"ISLS_STATE_DIR": str(tmp_path / "state")})
    copies = load_layouts(layout_dir(config.source), [])
    assert [c.source for c in copies] == [str(tmp_path / "config" / "dashboards" / n)
                                          for n in ("lander.yaml", "orbiter.yaml")]
    with pytest.raises(LayoutError) as error:
        build_dashboards(config, load_tmdbs(config.tmdb_paths))
    (problem,) = error.value.problems
    assert problem == (f"{tmp_path / 'config/dashboards/lander.yaml'}: row 'Descent profile' "
                       f"panel 'Throttle': parameter 'throttle' is not in packet 'lander_nav' "
                       f"of {lander} (did you mean 'throttle_cmd'?)")
    assert len(build_dashboards(config, tmdbs).dashboards) == 7  # the shipped TMDBs pass


def test_isls_up_warns_about_a_bad_layout_and_goes_on(
        tmp_path: Path, tmdbs: list[Tmdb], caplog: pytest.LogCaptureFixture) -> None:
    """Dashboards are not telemetry: a layout naming a parameter the TMDB lost must not
    stop `isls up` (it refreshes the dashboards as it starts); it says what is wrong,
    and the last good dashboards stay where they are."""
    from control_center.operations.up import refresh_dashboards

    shutil.copytree(PROJECT / "config", tmp_path / "config")
    layout = tmp_path / "config" / "dashboards" / "lander.yaml"
    layout.write_text(layout.read_text().replace("[altitude]", "[altitud]"))
    config = load_config(tmp_path / "config" / "isls.toml",
                         {"ISLS_STATE_DIR": str(tmp_path / "state")})
    out = tmp_path / "dashboards"
    with caplog.at_level(logging.WARNING, logger="isls.up"):
        refresh_dashboards(config, tmdbs, out)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "dashboards not refreshed" in warning
    assert "'altitud'" in warning and "did you mean 'altitude'" in warning
    assert not out.exists()
