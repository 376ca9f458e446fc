"""Import a partner's XTCE file (OMG XTCE 1.2 or 1.1) as a TMDB document.

XTCE (XML Telemetric and Command Exchange) describes a spacecraft's telemetry as a tree
of SpaceSystems holding parameter types, parameters and SequenceContainers; a packet is
a concrete container at the end of a chain of containers that inherit from each other
(``BaseContainer``), each link restricted by comparisons on the fields before it. This
package turns the telemetry part into the plain mapping a TMDB YAML file holds
(docs/contracts.md, "Telemetry database"), which
:func:`control_center.telemetry.tmdb_yaml.parse_tmdb` validates. It follows the ISLS
profile that :mod:`control_center.telemetry.xtce.export` writes (``isls`` aliases and
``isls.*`` AncillaryData, README "Partners' databases: XTCE"), so that our own export
imports back exactly, and reads what real mission files use:

- SpaceSystem trees: references are looked up in the referring system, then its
  ancestors; relative (``sub/name``, ``../name``) and absolute (``/Root/Sub/name``)
  paths and aggregate members (``param.member``, ``param/member``) resolve too.
- Containers: inheritance with Comparison / ComparisonList / BooleanExpression
  restrictions, abstract headers, ContainerRefEntry inlined, LocationInContainerInBits
  (``containerStart``: absolute from the packet start, ``previousEntry``: after the
  previous entry). Concrete containers without inheritors are the packets; the CCSDS
  primary header fields are known by their place, whatever their names. A restriction
  on the APID gives ``apid``, on the version ``packet_version``; telecommand packets
  (type 1) are skipped with a note; restrictions on other fields at fixed places become
  ``select`` (``> 1`` as the list of raw values it allows). A restriction may also test
  the container's own fields, as the ISLS profile writes ``select``.
- Types: integer (any size up to 64 bits, either byte order), float (IEEE 754 32/64 or
  an integer with a calibrator; a calibrated one's ``sizeInBits``, 32 unless given, is
  its ``engineering`` float32 or float64), enumerated (``maxValue`` ranges too),
  boolean, string and binary (fixed, or dynamic: ``size``), absolute and relative time,
  aggregates (flattened into ``<param>_<member>``), arrays (fixed: ``array: N``;
  dynamic: ``array: COUNTER`` or ``expand``), polynomial and first-order spline
  calibrators, units, static alarm ranges (limits), context alarms on an enum (limit
  sets), ``minViolations`` (persistence).

What is not supported is listed once per element, with its line, in
:attr:`XtceImport.unsupported`; what was taken with a change is in
:attr:`XtceImport.notes`. A packet that cannot be imported (or that the TMDB refuses:
each is checked with :func:`~control_center.telemetry.tmdb_yaml.parse_tmdb`) is skipped
with its reason and the others still import. A file that is not XTCE, not well-formed,
declares a DOCTYPE (entities: billion laughs, external files) or holds references to
nothing raises :class:`TmdbError` naming the file, line and element.

The modules, in the order the import runs: :mod:`.reading` (the hardened XML read),
:mod:`.elements` (elements in the file's namespace; problems, notes, unsupported),
:mod:`.systems` (the SpaceSystem tree, references), :mod:`.parameter_types` with
:mod:`.encodings` and :mod:`.alarms` (and :mod:`.conditions`, shared with
:mod:`.restrictions`), :mod:`.containers` (packets laid out, into :mod:`.model`),
:mod:`.fields` and :mod:`.documents` (each packet's document), :mod:`.database` (the
spacecraft's document across packets); :mod:`.importer` wires them.
"""

from control_center.telemetry.xtce.importer import XtceImport, import_xtce
from control_center.telemetry.xtce.reading import XTCE_11, XTCE_12

__all__ = ["XTCE_11", "XTCE_12", "XtceImport", "import_xtce"]
