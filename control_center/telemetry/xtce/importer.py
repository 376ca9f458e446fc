"""The import's pipeline: the file read, its SpaceSystems indexed, every type read, each
packet laid out, documented and checked by the TMDB, then the spacecraft's document put
together across packets. It wires the steps; they do the work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_center.errors import TmdbError
from control_center.telemetry.tmdb_yaml import parse_tmdb
from control_center.telemetry.xtce.containers import ContainerReader
from control_center.telemetry.xtce.database import DatabaseWriter
from control_center.telemetry.xtce.documents import PacketDocuments
from control_center.telemetry.xtce.elements import Findings
from control_center.telemetry.xtce.fields import NAME_PATTERN
from control_center.telemetry.xtce.model import PacketLayout, SkipPacket
from control_center.telemetry.xtce.parameter_types import TypeReader
from control_center.telemetry.xtce.reading import (
    XTCE_11,
    XTCE_12,
    Xml,
    read_root,
    xtce_namespace,
)
from control_center.telemetry.xtce.systems import SystemTree


@dataclass(frozen=True)
class XtceImport:
    """An imported XTCE file: the TMDB document and what the import changed or left out."""

    document: dict[str, Any]
    notes: tuple[str, ...]
    unsupported: tuple[str, ...]


class _Importer:
    """One pass over an XTCE file: the TMDB document, notes, unsupported elements and the
    problems that make the file unusable (in :attr:`findings`)."""

    def __init__(self, path: Path, root: Xml, namespace: str, spacecraft: str | None) -> None:
        self.findings = Findings(str(path))
        self.tree = SystemTree(self.findings, namespace, root)
        self.types = TypeReader(self.tree)
        self.containers = ContainerReader(self.tree, self.types)
        self.documents = PacketDocuments(self.findings, namespace)
        self.database = DatabaseWriter(self.tree, self.types, self.documents, spacecraft)

    def run(self) -> dict[str, Any]:
        tree, types, database = self.tree, self.types, self.database
        tree.report_commands()
        for system in tree.systems():
            for element in system.types.values():
                types.parse_type(system, element)
            for element in system.parameters.values():
                types.type_of(system, element)
        built: list[tuple[PacketLayout, dict[str, Any]]] = []
        for system, element in self.containers.packet_containers():
            try:
                packet = self.containers.build(system, element)
                built.append(_checked(packet, self.documents.packet_document(packet)))
            except SkipPacket as skip:
                if skip.listed and skip.element is not element:
                    tree.unsupported(skip.element, skip.system, skip.reason)
                if skip.note_only:
                    tree.note(element, system, f"packet skipped: {skip.reason}")
                else:
                    tree.unsupported(element, system, f"packet skipped: {skip.reason}")
        built = database.shared_apids(database.versions(built))
        for packet, _ in built:
            database.remember(packet)
        packets = [document for _, document in built]
        database.derived(packets)
        for packet, document in built:
            database.limit_sets(packet, document)
        database.derived_limit_sets()
        database.report_unused()
        return database.document(packets)


def _checked(packet: PacketLayout, document: dict[str, Any]
             ) -> tuple[PacketLayout, dict[str, Any]]:
    """The packet as the TMDB reads it, or skipped with what the TMDB says."""
    try:
        parse_tmdb({"spacecraft": "check", "packets": [document]}, "")
    except TmdbError as exc:
        raise SkipPacket(packet.container, packet.system, "the TMDB cannot hold it: "
                         + "; ".join(p.removeprefix(": ") for p in exc.problems),
                         listed=False) from None
    return packet, document


def import_xtce(path: Path, spacecraft: str | None = None) -> XtceImport:
    """Read an XTCE file's telemetry as a TMDB document (see :mod:`control_center.telemetry.xtce`).

    ``spacecraft`` names the result (default: the root SpaceSystem's name made
    lower_snake_case). Raises :class:`TmdbError` for a file that is not usable XTCE,
    naming the file, line and element of every problem.
    """
    root = read_root(path)
    where = str(path)
    namespace = xtce_namespace(root, where)
    if spacecraft is not None and not NAME_PATTERN.match(spacecraft):
        raise TmdbError([f"{where}: spacecraft {spacecraft!r} must be lower_snake_case"])
    importer = _Importer(path, root, namespace, spacecraft)
    if namespace and namespace not in (XTCE_12, XTCE_11):
        importer.tree.note(None, None, f"namespace {namespace} read as XTCE")
    document = importer.run()
    findings = importer.findings
    if findings.problems:
        raise TmdbError(findings.problems)
    if not document["packets"]:
        raise TmdbError([f"{where}: no packet could be imported"] + [
            f"  {item}" for item in findings.unsupported_list])
    return XtceImport(document, tuple(findings.notes), findings.unsupported_list)
