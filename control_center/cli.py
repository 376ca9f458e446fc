"""``isls``: the one command-line entry point of the control center.

Every user-facing failure is an :class:`IslsError` printed as one line (or one line
per problem) with exit status 2; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import yaml

if TYPE_CHECKING:
    from simulators.runner import PacketGenerator

from control_center.config import Config, load_config
from control_center.errors import IslsError, TmdbError
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdbs, parse_tmdb
from control_center.terminal import stop_on_signals, utc_text

log = logging.getLogger("isls")
DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
NETWORK_FILE = Path(__file__).resolve().parent.parent / "config" / "network.toml"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _global_options(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """``--config`` and ``--verbose``, accepted before and after the subcommand."""
    parser.add_argument("--config", type=Path,
                        default=None if default else argparse.SUPPRESS,
                        help="configuration file (default: $ISLS_CONFIG or config/isls.toml)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=False if default else argparse.SUPPRESS, help="debug logging")


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser (and its own subcommands'): the global options are accepted
    after the subcommand too (`isls up --config X`). There they default to nothing, so
    that one given before the subcommand stands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _global_options(self, default=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isls", description="ISLS ground telemetry system")
    _global_options(parser, default=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_CommandParser)

    up = commands.add_parser("up", help="run the whole control center (servers, simulators, "
                             "ingest)")
    up.add_argument("--duration", type=_positive, help="stop cleanly after this many seconds")
    up.add_argument("--no-sim", action="store_true", help="start no simulators (with "
                    "--network: none at the stations)")
    up.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    up.add_argument("--hil", action="store_true", help="hardware in the loop without "
                    "hardware: the orbiter simulator (relaying the lander) writes TM frames "
                    "into a pty pair that the ingest reads")
    up.add_argument("--baud", type=int, default=115200, help="--hil line rate (default 115200)")
    up.add_argument("--noise", type=float, default=0.0, help="--hil line noise, events per "
                    "octet (e.g. 1e-5)")
    up.add_argument("--network", type=Path, nargs="?", const=NETWORK_FILE, metavar="FILE",
                    help="run the sites of a ground network file side by side (default "
                    "file: config/network.toml; every site unless --site)")
    up.add_argument("--site", action="append", metavar="NAME", help="with --network: run "
                    "only this site (a station, center or partner); repeatable")
    up.add_argument("--speed", type=_positive, help="--network: simulated seconds per second "
                    "(default: config simulator.speed)")

    servers = commands.add_parser("servers", help="run only the local broker and InfluxDB "
                                  "(as isls up starts them), for services started by hand")
    servers.add_argument("--duration", type=_positive, help="stop after this many seconds")

    sim = commands.add_parser("sim", help="run one spacecraft simulator (publishes over MQTT)")
    sim.add_argument("kind", choices=("lander", "orbiter"))
    sim.add_argument("--rate", type=_positive, help="rate in Hz of the fastest packet type; "
                     "the others keep their ratio (default: the TMDB periods)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--speed", type=_positive, help="simulated seconds per second "
                     "(default: config simulator.speed)")
    sim.add_argument("--duration", type=_positive, help="stop after this many seconds")
    sim.add_argument("--fault", help="inject a fault (lander: battery-drain, thruster-stuck, "
                     "heater-off, sensor-freeze)")
    sim.add_argument("--fault-until", type=_positive, metavar="SECONDS", help="simulated "
                     "time at which the fault clears (default: never); faults start at 30 s")
    sim.add_argument("--spacecraft", help="spacecraft name to publish as (default: the "
                     "configured spacecraft using this simulator)")
    sim.add_argument("--serial", metavar="PATH", help="write framed telemetry to this serial "
                     "device instead of MQTT, paced to --baud")
    sim.add_argument("--baud", type=int, default=115200, help="serial line rate (default "
                     "115200)")
    sim.add_argument("--framing", choices=("tm", "cobs"), default="tm",
                     help="serial framing: CCSDS TM frames (default) or COBS")
    sim.add_argument("--frame-length", type=int, default=1115, help="TM frame length in "
                     "octets (default 1115)")
    sim.add_argument("--noise", type=float, default=0.0, help="serial line noise, events per "
                     "octet: bit errors, dropped and inserted octets, garbage bursts")
    sim.add_argument("--noise-seed", type=int, default=0)
    sim.add_argument("--relay", action="store_true", help="orbiter only: also run the lander "
                     "and relay its packets on virtual channel 1")

    ingest = commands.add_parser("ingest", help="run the ingest service (MQTT and serial "
                                 "links → InfluxDB)")
    ingest.add_argument("--duration", type=_positive, help="stop after this many seconds")

    commands.add_parser("doctor", help="check a deployment: config, telemetry databases, "
                        "broker and InfluxDB reachable and writable, disk, spool, clock")

    link = commands.add_parser("link", help="serial link tools")
    link_commands = link.add_subparsers(dest="link_command", required=True, metavar="ACTION")
    status = link_commands.add_parser("status", help="each link live: locked or searching, "
                                      "frames good and bad, gaps, bit rate, last frame")
    status.add_argument("--once", action="store_true", help="print the current state and exit")

    alarms = commands.add_parser("alarms", help="active alarms, live; acknowledge or shelve one")
    alarms.add_argument("action", nargs="?", choices=("list", "ack", "shelve"), default="list")
    alarms.add_argument("alarm_id", nargs="?", help="with ack or shelve: the alarm")
    alarms.add_argument("--by", default="", help="who acknowledges or shelves (required)")
    alarms.add_argument("--note", default="", help="a note for the log")
    alarms.add_argument("--minutes", type=_positive, default=60.0,
                        help="with shelve: for how long (default 60)")
    alarms.add_argument("--once", action="store_true", help="list: print once and exit")

    passes = commands.add_parser("passes", help="recorded passes: list, or show one")
    passes.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    passes.add_argument("pass_id", nargs="?", help="with show: the pass")
    passes.add_argument("--spacecraft", help="only this spacecraft's passes")

    letters = commands.add_parser("dead-letters", help="messages the ingest quarantined: "
                                  "list them, or publish them again")
    letters.add_argument("action", nargs="?", choices=("list", "replay"), default="list")
    letters.add_argument("ids", nargs="*", help="with replay: the ids to publish again "
                         "(default: every one)")

    replay = commands.add_parser("replay", help="republish a recorded pass into the pipeline")
    replay.add_argument("pass_id")
    replay.add_argument("--speed", default="1", help="times real time, or max (default 1)")
    replay.add_argument("--from", dest="start", help="start: +SECONDS from the pass start or "
                        "an ISO 8601 UTC time")
    replay.add_argument("--to", dest="end", help="end, the same way")
    replay.add_argument("--shift-to-now", action="store_true", help="move time stamps so the "
                        "pass starts now (training sessions that must look live)")

    imp_files = commands.add_parser("import", help="load files of back-to-back CCSDS packets")
    imp_files.add_argument("files", nargs="+", type=Path)
    imp_files.add_argument("--spacecraft", help="whose telemetry database decodes them "
                           "(default: the one that knows the files' APIDs)")

    report = commands.add_parser("report", help="write a pass report (PNG plots and HTML)")
    report.add_argument("pass_id")
    report.add_argument("--out", type=Path, required=True, help="output directory")

    dashboards = commands.add_parser("dashboards", help="Grafana dashboards generated from "
                                     "the telemetry database")
    dashboard_commands = dashboards.add_subparsers(dest="dashboards_command", required=True,
                                                   metavar="ACTION")
    build = dashboard_commands.add_parser("build", help="write dashboard JSON and Grafana "
                                          "provisioning files")
    build.add_argument("--out", type=Path, default=DASHBOARDS_DIR,
                       help="output directory (default: dashboards/)")
    push = dashboard_commands.add_parser("push", help="create or update the data source, "
                                         "folders and dashboards in a Grafana (token from "
                                         "GRAFANA_TOKEN)")
    push.add_argument("--url", help="Grafana URL (default: config grafana.url)")
    push.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")

    network = commands.add_parser("network", help="the ground network: what its centers "
                                  "and partners store")
    network_commands = network.add_subparsers(dest="network_command", required=True,
                                              metavar="ACTION")
    compare = network_commands.add_parser(
        "compare", help="live packets per spacecraft and UTC hour at every center and "
        "partner, differences marked (exit 0 same, 1 different, 2 a site not read)")
    compare.add_argument("--network", type=Path, default=NETWORK_FILE, metavar="FILE",
                         help="the network file (default: config/network.toml)")
    compare.add_argument("--from", dest="start", metavar="TIME", help="from this ISO 8601 "
                         "UTC time (default: the first point stored)")
    compare.add_argument("--to", dest="end", metavar="TIME", help="until this ISO 8601 UTC "
                         "time, not included (default: the last point stored)")
    compare.add_argument("--points", action="store_true", help="also compare the point "
                         "times of each spacecraft-hour as sets (slower: a query per "
                         "spacecraft-hour and site; narrow it with --from/--to)")
    compare.add_argument("--differences", action="store_true", help="print only the rows "
                         "that differ")
    compare.add_argument("--database", default="isls", help="the InfluxDB database of "
                         "every site (default isls)")

    tmdb = commands.add_parser("tmdb", help="telemetry database tools")
    tmdb_commands = tmdb.add_subparsers(dest="tmdb_command", required=True, metavar="ACTION")
    check = tmdb_commands.add_parser("check", help="validate telemetry database files and, "
                                     "against them, the mission dashboard layouts "
                                     "(dashboards/ beside the config file)")
    check.add_argument("paths", nargs="*", type=Path, help="files (default: the configured "
                       "ones)")
    imp = tmdb_commands.add_parser("import-csv", help="import a ccsdspy packet definition CSV")
    imp.add_argument("csv", type=Path)
    imp.add_argument("--apid", type=_integer, required=True)
    imp.add_argument("--name", required=True, help="packet name")
    imp.add_argument("--length", type=_integer, help="whole packet length in octets, when the "
                     "fields do not reach the end")
    imp.add_argument("--spacecraft", default="imported", help="spacecraft name for a new file")
    imp.add_argument("--out", type=Path, help="TMDB file to add the packet to (created if "
                     "missing); default: print YAML")
    xtce_in = tmdb_commands.add_parser(
        "import-xtce", help="turn a partner's XTCE (1.2 or 1.1) file into a telemetry database",
        description="Read an XTCE file's telemetry (SpaceSystem tree, containers, types, "
                    "calibrators, alarms) into a TMDB; every element not supported is listed "
                    "with its line. A configuration may also name the .xml file directly.")
    xtce_in.add_argument("xtce", type=Path, metavar="FILE.xml")
    xtce_in.add_argument("--spacecraft", help="spacecraft name (default: the root "
                         "SpaceSystem's name, lower_snake_case)")
    xtce_in.add_argument("--out", type=Path, help="YAML file to write (default: print it)")
    xtce_out = tmdb_commands.add_parser(
        "export-xtce", help="write a telemetry database as XTCE 1.2 (validated against the "
                            "official schema) for a partner's Yamcs or COSMOS")
    xtce_out.add_argument("spacecraft", nargs="?", help="a configured spacecraft, or a TMDB "
                          "file (default: every configured spacecraft)")
    xtce_out.add_argument("--out", type=Path, help="file to write (a directory when several "
                          "spacecraft are exported; default: print the XML)")
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def _load(args: argparse.Namespace) -> tuple[Config, list[Tmdb]]:
    config = load_config(args.config)
    return config, load_tmdbs(config.tmdb_paths)


def cmd_tmdb_check(args: argparse.Namespace) -> int:
    """The telemetry databases, and the mission layouts of their spacecraft against them
    (``dashboards/`` beside the configuration file): every problem, exit 1 if any."""
    from control_center.config import config_file as find_config
    from control_center.grafana.layout import MissionLayout, layout_dir, load_layouts

    if args.paths:
        paths: list[Path] = args.paths
        # Files named: the configuration need not load, only be found for its layouts.
        config_file = find_config(args.config)
    else:
        config = load_config(args.config)
        paths, config_file = config.tmdb_paths, Path(config.source)
    problems: list[str] = []
    tmdbs: list[Tmdb] = []
    layouts: tuple[MissionLayout, ...] = ()
    try:
        tmdbs = load_tmdbs(paths)
    except TmdbError as exc:
        problems.extend(exc.problems)
    try:  # against the TMDBs that loaded; the layouts' own form in any case
        layouts = load_layouts(layout_dir(config_file), tmdbs)
    except TmdbError as exc:
        problems.extend(exc.problems)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    for tmdb in tmdbs:
        parameters = sum(len(p.parameters) for p in tmdb.packets)
        print(f"{tmdb.source}: ok: spacecraft {tmdb.spacecraft}, {len(tmdb.packets)} packets, "
              f"{parameters} parameters")
    checked = {tmdb.spacecraft for tmdb in tmdbs}
    for layout in layouts:
        if layout.spacecraft in checked:
            panels = sum(len(row.panels) for row in layout.rows)
            print(f"{layout.source}: ok: mission dashboard of {layout.spacecraft}, "
                  f"{len(layout.rows)} rows, {panels} panels")
        else:
            print(f"{layout.source}: parameters not checked: no telemetry database of "
                  f"spacecraft {layout.spacecraft} among these")
    return 0


def cmd_tmdb_import(args: argparse.Namespace) -> int:
    from control_center.telemetry.ccsdspy_csv import import_ccsdspy_csv

    packet, notes = import_ccsdspy_csv(args.csv, args.apid, args.name, args.length)
    for note in notes:  # what was taken with a change, row by row
        print(f"note: {note}", file=sys.stderr)
    if args.out is None:
        document = {"spacecraft": args.spacecraft, "packets": [packet]}
        parse_tmdb(document, str(args.csv))
        print(yaml.safe_dump(document, sort_keys=False), end="")
        return 0
    if args.out.exists():
        document = yaml.safe_load(args.out.read_text()) or {}
        document.setdefault("packets", [])
        document["packets"] = [p for p in document["packets"]
                               if p.get("name") != packet["name"]] + [packet]
    else:
        document = {"spacecraft": args.spacecraft, "packets": [packet]}
    parse_tmdb(document, str(args.out))  # refuse to write an invalid database
    args.out.write_text(yaml.safe_dump(document, sort_keys=False))
    print(f"{args.out}: packet {packet['name']} (APID {args.apid}, "
          f"{len(packet['parameters'])} parameters) written")
    _say_how_to_add(args, str(document.get("spacecraft", args.spacecraft)))
    return 0


def cmd_tmdb_import_xtce(args: argparse.Namespace) -> int:
    from control_center.telemetry.xtce import import_xtce

    result = import_xtce(args.xtce, args.spacecraft)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for item in result.unsupported:
        print(f"not supported: {item}", file=sys.stderr)
    tmdb = parse_tmdb(result.document, str(args.xtce))  # refuse to write an invalid one
    text = yaml.safe_dump(result.document, sort_keys=False, allow_unicode=True)
    parameters = sum(len(p.parameters) for p in tmdb.packets)
    summary = (f"{args.xtce}: spacecraft {tmdb.spacecraft}, {len(tmdb.packets)} packets, "
               f"{parameters} parameters; {len(result.unsupported)} element(s) not supported")
    if args.out is None:
        print(text, end="")
        print(summary, file=sys.stderr)
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"{summary}\n{args.out}: written")
    _say_how_to_add(args, tmdb.spacecraft)
    return 0


def cmd_tmdb_export_xtce(args: argparse.Namespace) -> int:
    from control_center.telemetry.tmdb_yaml import load_tmdb
    from control_center.telemetry.xtce.export import export_xtce, validate_xtce

    if args.spacecraft and Path(args.spacecraft).suffix in (".yaml", ".yml", ".xml"):
        tmdbs = [load_tmdb(Path(args.spacecraft))]
    else:
        _, tmdbs = _load(args)
        if args.spacecraft:
            tmdbs = [t for t in tmdbs if t.spacecraft == args.spacecraft]
            if not tmdbs:
                raise IslsError(f"no spacecraft {args.spacecraft!r} in the configuration "
                                f"(give its name or a TMDB file)")
    if args.out is None and len(tmdbs) > 1:
        raise IslsError("several spacecraft: give one, or --out DIRECTORY")
    for tmdb in tmdbs:
        document = export_xtce(tmdb)
        problems = validate_xtce(document)
        if problems:  # a defect of ours: never hand a partner an invalid file
            raise TmdbError([f"{tmdb.spacecraft}: export does not validate against XTCE "
                             f"1.2: {p}" for p in problems])
        if args.out is None:
            sys.stdout.buffer.write(document)
            continue
        target = args.out / f"{tmdb.spacecraft}.xml" if len(tmdbs) > 1 or args.out.is_dir() \
            else args.out
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(document)
        parameters = sum(len(p.parameters) for p in tmdb.packets)
        print(f"{target}: XTCE 1.2 of {tmdb.spacecraft} ({len(tmdb.packets)} packets, "
              f"{parameters} parameters), valid against the official schema")
    return 0


def _say_how_to_add(args: argparse.Namespace, spacecraft: str) -> None:
    """The step after an import: a spacecraft no configuration names is decoded nowhere."""
    from control_center.config import config_file

    path = config_file(args.config)
    try:
        if spacecraft in {s.name for s in load_config(args.config).spacecraft}:
            return
    except IslsError:
        pass  # no usable configuration: say what to add all the same
    tmdb = args.out.resolve()
    with contextlib.suppress(ValueError):
        tmdb = tmdb.relative_to(path.resolve().parent)
    print(f"spacecraft {spacecraft!r} is not in {path}: to decode and store it live, add\n"
          f"\n[[spacecraft]]\nname = \"{spacecraft}\"\ntmdb = \"{tmdb}\"\n\n"
          f"then `isls tmdb check` and `isls up` (its dashboards come with it).")


def cmd_servers(args: argparse.Namespace) -> int:
    from control_center.operations.up import servers

    config, tmdbs = _load(args)
    return servers(config, tmdbs, duration=args.duration)


def cmd_up(args: argparse.Namespace) -> int:
    from control_center.operations.up import HilSettings, up

    if args.network is not None or args.site:
        return _network_up(args)
    config, tmdbs = _load(args)
    if args.hil and not {"lander", "orbiter"} <= {t.spacecraft for t in tmdbs}:
        raise IslsError(f"{config.source}: spacecraft: --hil needs spacecraft named lander "
                        f"and orbiter")
    hil = HilSettings(baud=args.baud, noise=args.noise, seed=args.seed) if args.hil else None
    return up(config, tmdbs, duration=args.duration, simulate=not args.no_sim, seed=args.seed,
              hil=hil, dashboards_dir=config.grafana.dashboards_dir)


def _network_up(args: argparse.Namespace) -> int:
    from control_center.network.run import network_up
    from control_center.network.sites import load_network

    network = load_network(args.network or NETWORK_FILE)
    unknown = [s for s in args.site or () if s not in {site.name for site in network.sites}]
    if unknown:
        raise IslsError(f"--site {', '.join(unknown)}: not a site of {network.source} "
                        f"({', '.join(s.name for s in network.sites)})")
    if args.hil:
        raise IslsError("--hil (and its --baud, --noise) runs one control center; it does "
                        "not combine with --network")
    config = load_config(args.config)
    return network_up(config, network, args.site, duration=args.duration,
                      speed=args.speed or config.simulator.speed, seed=args.seed,
                      simulate=not args.no_sim)


def cmd_network(args: argparse.Namespace) -> int:
    from control_center.network.compare import (
        account_headers,
        compare_network,
        format_comparison,
        parse_utc,
    )
    from control_center.network.sites import load_network

    network = load_network(args.network)
    comparison = compare_network(
        network, database=args.database, points=args.points,
        start_ns=None if args.start is None else parse_utc(args.start, "--from"),
        end_ns=None if args.end is None else parse_utc(args.end, "--to"),
        headers=account_headers(os.environ))
    print(format_comparison(comparison, only_differences=args.differences))
    return comparison.exit_code


def cmd_sim(args: argparse.Namespace) -> int:
    from simulators.runner import PacketGenerator, SimulatorService, make_model

    config, tmdbs = _load(args)
    name = args.spacecraft or next((s.name for s in config.spacecraft
                                    if s.simulator == args.kind), args.kind)
    tmdb = next((t for t in tmdbs if t.spacecraft == name), None)
    if tmdb is None:
        raise IslsError(f"{config.source}: spacecraft: no spacecraft named {name!r}; "
                        f"configured: {', '.join(t.spacecraft for t in tmdbs)}")
    try:
        model = make_model(args.kind, args.seed, args.fault, args.fault_until)
    except ValueError as exc:
        raise IslsError(f"--fault: {exc}") from None
    generator = PacketGenerator(model, tmdb, rate=args.rate)
    speed = args.speed or config.simulator.speed
    if args.serial:
        return _sim_serial(args, config, tmdbs, tmdb, generator, speed)
    if args.relay:
        raise IslsError("--relay: only with --serial (relay is a serial downlink feature)")
    service = SimulatorService(generator, config.mqtt, speed=speed,
                               publish_interval=config.simulator.publish_interval)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        log.info("simulator %s publishing to %s on %s", args.kind,
                 f"isls/{name}/tm/raw", config.mqtt.url)
        await service.run(stop, args.duration)

    asyncio.run(main())
    log.info("simulator stopped: %d messages, packets %s", service.stats.messages,
             dict(service.stats.packets))
    return 0


def _sim_serial(args: argparse.Namespace, config: Config, tmdbs: list[Tmdb], tmdb: Tmdb,
                generator: PacketGenerator, speed: float) -> int:
    from simulators.noise import LinkNoise
    from simulators.runner import PacketGenerator, make_model
    from simulators.serial_link import SerialSimulatorService

    channels = [(0, generator)]
    if args.relay:
        if args.kind != "orbiter":
            raise IslsError("--relay: only the orbiter relays (the lander on channel 1)")
        lander = next((t for t in tmdbs if t.spacecraft == "lander"), None)
        if lander is None:
            raise IslsError(f"{config.source}: spacecraft: --relay needs a spacecraft lander")
        channels.append((1, PacketGenerator(make_model("lander", args.seed), lander)))
    try:
        noise = LinkNoise(args.noise, args.noise_seed) if args.noise else None
        service = SerialSimulatorService(
            channels, args.serial, args.baud, framing=args.framing,
            frame_length=args.frame_length, spacecraft_id=tmdb.spacecraft_id, speed=speed,
            noise=noise)
    except ValueError as exc:
        raise IslsError(f"--noise/--framing: {exc}") from None

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        log.info("simulator %s writing %s frames to %s at %d baud", args.kind, args.framing,
                 args.serial, args.baud)
        await service.run(stop, args.duration)

    asyncio.run(main())
    stats = service.stats
    log.info("simulator stopped: %d frames (%d destroyed by noise), packets sent %s, "
             "expected to arrive %s", stats.frames, stats.frames_destroyed,
             dict(stats.packets), dict(stats.survivors))
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """``isls dead-letters [list]``: what the ingest quarantined and why;
    ``isls dead-letters replay [ID...]``: publish those payloads again on their raw
    topic with a fresh earth-receive time (the properties that made them poison stay
    behind in the store), once the ingest or the publisher is fixed."""
    import time
    from datetime import UTC, datetime

    from control_center.storage.dead_letters import DeadLetterStore
    from drivers.mqtt import raw_properties, raw_topic, with_broker

    config = load_config(args.config)
    store = DeadLetterStore(config.state_dir / "dead_letters")
    letters = list(store)
    if args.action == "list":
        if not letters:
            print(f"no dead letters in {store.directory}")
        for letter in letters:
            when = datetime.fromtimestamp(letter.quarantined_ns / 1e9, UTC)
            print(f"{letter.id:>10}  {when:%Y-%m-%dT%H:%M:%SZ}  {letter.topic}  "
                  f"{len(letter.payload)} octets  {letter.reason}")
        return 0
    unknown = set(args.ids) - {d.id for d in letters}
    if unknown:
        raise IslsError(f"isls dead-letters replay: no dead letter {', '.join(sorted(unknown))} "
                        f"(see `isls dead-letters list`)")
    chosen = [d for d in letters if not args.ids or d.id in args.ids]

    async def session(client: aiomqtt.Client) -> int:
        for letter in chosen:
            topic = letter.topic if letter.topic.endswith(("/tm/raw", "/tm/replay")) \
                else raw_topic(letter.spacecraft)
            await client.publish(topic, letter.payload, qos=1,
                                 properties=raw_properties(time.time_ns(), "dead-letters"))
        return len(chosen)

    sent = asyncio.run(with_broker(config.mqtt, "isls-dead-letters", session, retry=False))
    print(f"published {sent} dead letter(s) again with a fresh earth-receive time")
    return 0


def cmd_passes(args: argparse.Namespace) -> int:
    from control_center.archive.recorder import list_passes, pass_info

    config = load_config(args.config)
    if args.action == "show":
        if not args.pass_id:
            raise IslsError("isls passes show: name the pass (see `isls passes`)")
        info = pass_info(config.archive_dir, args.pass_id)
        state = {"closed": "loss of signal", "open": "open, being recorded",
                 "interrupted": "interrupted: its recorder stopped before loss of signal; "
                                "the next ingest resumes or closes it"}.get(info.state, "")
        if info.damage:
            state = f"{'loss of signal' if info.closed else 'not closed'}; DAMAGED: {info.damage}"
        print(f"pass        {info.id}\n"
              f"spacecraft  {info.spacecraft}\n"
              f"start       {utc_text(info.start_ns)} UTC (acquisition of signal)\n"
              f"end         {utc_text(info.end_ns)} UTC ({state})\n"
              f"duration    {info.duration:.1f} s\n"
              f"packets     {info.packets}\n"
              f"octets      {info.octets}\n"
              f"gaps        {info.gaps} packets missing by sequence count\n"
              f"records     {info.records} in {info.segments} segment(s)\n"
              f"links       {', '.join(info.links)}")
        return 0
    passes = [p for p in list_passes(config.archive_dir)
              if args.spacecraft is None or p.spacecraft == args.spacecraft]
    if not passes:
        print(f"no passes recorded in {config.archive_dir}")
        return 0
    print(f"{'pass':<34} {'spacecraft':<10} {'start (UTC)':<19}  {'end (UTC)':<19} "
          f"{'duration':>9} {'packets':>9} {'octets':>11} {'gaps':>6}  state")
    for info in passes:
        print(f"{info.id:<34} {info.spacecraft:<10} "
              f"{utc_text(info.start_ns)}  {utc_text(info.end_ns)} "
              f"{info.duration:8.0f}s {info.packets:>9} {info.octets:>11} {info.gaps:>6}  "
              f"{info.state}")
    # A damaged pass is listed with the others, and why it is damaged said once.
    for info in passes:
        if info.damage:
            print(f"isls passes: {info.id}: damaged: {info.damage}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from control_center.archive.replay import replay_pass

    config = _operator_config(args)
    if args.speed == "max":
        speed = None
    else:
        try:
            speed = float(args.speed)
        except ValueError:
            raise IslsError(f"--speed {args.speed!r}: a number or max") from None
        if speed <= 0:
            raise IslsError("--speed must be positive")
    stats = asyncio.run(replay_pass(config, args.pass_id, speed=speed, start=args.start,
                                    end=args.end, shift_to_now=args.shift_to_now))
    print(f"replayed {args.pass_id}: {stats.records} records, {stats.octets} octets in "
          f"{stats.seconds:.1f} s ({stats.speedup:.1f}x real time); the ingest stores them "
          f"with source=replay, pass={args.pass_id}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from control_center.archive.importer import import_files
    from control_center.operations.servers import PRIVATE_UMASK

    config, tmdbs = _load(args)
    os.umask(PRIVATE_UMASK)  # its spool and dead letters, as the ingest's
    summary = asyncio.run(import_files(config, tmdbs, args.files, spacecraft=args.spacecraft))
    print(f"imported {summary.files} file(s), {summary.octets} octets: "
          f"{sum(summary.packets.values())} packets, {summary.values_written} values "
          f"(source=import)")
    for name, count in sorted(summary.packets.items()):
        print(f"  {name:<40} {count:>9}")
    errors = +summary.errors  # the kinds that happened
    unknown = errors.get("unknown_apid", 0)
    bad = errors.total() - unknown
    print(f"  unknown APIDs {unknown}, bad packets {bad}"
          + (f" ({', '.join(f'{k} {v}' for k, v in sorted(errors.items()))})"
             if errors else ""))
    # A file that gave no good packet is a failed import, whatever the others gave.
    empty = summary.files_without_packets
    for file in empty:
        if file.problem:
            detail = f"0 good packets: {file.problem}"
        else:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted((+file.errors).items()))
            detail = f"0 good packets of {file.seen}" + (f" ({kinds})" if kinds else "")
        print(f"isls import: {file.path}: {detail} — nothing stored from this file",
              file=sys.stderr)
    if summary.rejected_lines:
        kept = config.state_dir / "spool" / "dead_letters"
        print(f"isls import: InfluxDB refused {summary.rejected_lines} lines "
              f"({summary.dead_letter_lines} kept in {kept})", file=sys.stderr)
    return 1 if empty or summary.rejected_lines else 0


def cmd_report(args: argparse.Namespace) -> int:
    from control_center.archive.report import write_report

    config, tmdbs = _load(args)
    summary = write_report(config.archive_dir, args.pass_id, tmdbs, args.out)
    print(f"report of {args.pass_id} written to {summary.index}")
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    import os

    from control_center.grafana.dashboards import build_dashboards, influx_auth, write_dashboards

    config, tmdbs = _load(args)
    dashboard_set = build_dashboards(config, tmdbs)
    if args.dashboards_command == "build":
        written = write_dashboards(dashboard_set, args.out, influx_auth=influx_auth(config))
        print(f"{len(dashboard_set.dashboards)} dashboards and provisioning written to "
              f"{args.out} ({len(written)} files)")
        return 0
    from control_center.grafana.push import push_dashboards

    url = args.url or config.grafana.url
    if not url:
        raise IslsError("isls dashboards push: give --url or set grafana.url in the config")
    token = os.environ.get("GRAFANA_TOKEN", "")
    if not token:
        raise IslsError("isls dashboards push: set GRAFANA_TOKEN to a Grafana service "
                        "account token (Admin role to create or change the data source; "
                        "Editor is enough once it exists)")
    summary = push_dashboards(dashboard_set, url, token, verify=not args.insecure)
    print(f"data source: {summary.datasource}")
    for title, state in sorted(summary.folders.items()):
        print(f"folder {title}: {state}")
    for uid, state in sorted(summary.dashboards.items()):
        print(f"dashboard {uid}: {state}")
    return 0


def _operator_config(args: argparse.Namespace) -> Config:
    """The configuration for an operator tool (alarms, link status, replay): on a broker
    with accounts, it logs in as ``isls-operator`` when no user is named and that
    account's password is at hand (``ISLS_MQTT_PASSWORD_ISLS_OPERATOR``, or the secrets
    file ``isls up`` keeps in the state directory)."""
    from dataclasses import replace

    from control_center.operations.security import OPERATOR, account_settings

    config = load_config(args.config)
    if config.mqtt.username:
        return config
    return replace(config, mqtt=account_settings(config, OPERATOR))


def cmd_alarms(args: argparse.Namespace) -> int:
    from control_center.operations.alarm_console import command_alarm, list_alarms

    config = _operator_config(args)
    if args.action == "list":
        return asyncio.run(list_alarms(config.mqtt, once=args.once))
    if not args.alarm_id:
        raise IslsError(f"isls alarms {args.action}: name the alarm (see `isls alarms`)")
    return asyncio.run(command_alarm(config.mqtt, args.action, args.alarm_id, args.by,
                                     args.note, args.minutes))


def cmd_link_status(args: argparse.Namespace) -> int:
    from control_center.operations.link_status import link_status

    config = _operator_config(args)
    return asyncio.run(link_status(config.mqtt, once=args.once))


def cmd_doctor(args: argparse.Namespace) -> int:
    from control_center.operations.doctor import doctor

    return asyncio.run(doctor(load_config(args.config)))


def cmd_ingest(args: argparse.Namespace) -> int:
    from control_center.operations.servers import PRIVATE_UMASK
    from control_center.pipeline.service import IngestService

    config, tmdbs = _load(args)
    # What the ingest keeps (archive, spool, alarm state, dead letters) is telemetry of
    # every agency: its owner's only, as under `isls up` (0600 files, 0700 directories).
    os.umask(PRIVATE_UMASK)
    service = IngestService.from_config(config, tmdbs)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop, args.duration)
        await service.run(stop)

    asyncio.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    handlers = {"up": cmd_up, "network": cmd_network, "sim": cmd_sim, "ingest": cmd_ingest,
                "link": cmd_link_status,
                "passes": cmd_passes, "replay": cmd_replay, "import": cmd_import,
                "dead-letters": cmd_dead_letters,
                "report": cmd_report, "dashboards": cmd_dashboards, "alarms": cmd_alarms,
                "doctor": cmd_doctor, "servers": cmd_servers}
    try:
        if args.command == "tmdb":
            if args.tmdb_command == "check":
                return cmd_tmdb_check(args)
            if args.tmdb_command == "import-xtce":
                return cmd_tmdb_import_xtce(args)
            if args.tmdb_command == "export-xtce":
                return cmd_tmdb_export_xtce(args)
            return cmd_tmdb_import(args)
        return handlers[args.command](args)
    except TmdbError as exc:
        for problem in exc.problems:
            print(f"isls: {problem}", file=sys.stderr)
        return 2
    except IslsError as exc:
        print(f"isls: {exc}", file=sys.stderr)
        return 2
    except aiomqtt.MqttError as exc:
        # The operator commands name the broker themselves (operator.with_broker); this
        # keeps any other command's broker trouble to one line as well.
        print(f"isls: MQTT broker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`isls passes | head -3`): not an error of ours, and no
        # traceback. Point stdout at /dev/null so that flushing it at exit stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
