"""The hardened read of an XTCE file: a DOCTYPE refused before anything is parsed
(entities: billion laughs, external files), lxml with entities, DTDs and the network
off, and the root checked to be an XTCE SpaceSystem (the 1.2 or 1.1 namespace, or none)."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

from lxml import etree

from control_center.errors import TmdbError

XTCE_12 = "http://www.omg.org/spec/XTCE/20180204"
XTCE_11 = "http://www.omg.org/space/xtce"
Xml = Any  # an lxml element: lxml ships no type information


def _prolog_declares_doctype(data: bytes) -> bool:
    """Whether a DOCTYPE comes before the root element (skipping the XML declaration,
    comments and processing instructions), seen without parsing anything."""
    head = data[:1 << 16]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = head.decode("utf-16", errors="ignore")
    else:
        text = head.decode("latin-1").removeprefix("\xef\xbb\xbf")
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n\ufeff":
            position += 1
        for opening, closing in (("<?", "?>"), ("<!--", "-->")):
            if text.startswith(opening, position):
                end = text.find(closing, position)
                if end < 0:
                    return False
                position = end + len(closing)
                break
        else:
            return text.startswith("<!DOCTYPE", position)


def _refused(where: str, line: int) -> TmdbError:
    return TmdbError([f"{where}:{line}: refused: the file declares a DOCTYPE (entities or an "
                      "external DTD); XTCE needs none, and one can expand to gigabytes "
                      "(billion laughs) or read local files. Remove the DOCTYPE."])


def read_root(path: Path) -> Xml:
    """The root element, parsed with entities, DTDs and the network refused."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TmdbError([f"{where}: cannot read: {exc.strerror}"]) from None
    if _prolog_declares_doctype(data):
        raise _refused(where, 1)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser, base_url=where)
    except etree.XMLSyntaxError as exc:
        if "entit" in str(exc.msg).lower():
            raise _refused(where, exc.lineno or 1) from None
        raise TmdbError([f"{where}:{exc.lineno}: not well-formed XML: {exc.msg}"]) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None \
            or next(root.iter(etree.Entity), None) is not None:
        raise _refused(where, 1)
    return root


def xtce_namespace(root: Xml, where: str) -> str:
    """The root's namespace ("" for none), or :class:`TmdbError` if it is not XTCE."""
    namespace = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "SpaceSystem" or (
            namespace and namespace not in (XTCE_12, XTCE_11)
            and "xtce" not in namespace.lower()):
        raise TmdbError([f"{where}:{root.sourceline}: not an XTCE file: the root element is "
                         f"<{root.tag}>, XTCE's is <SpaceSystem> (namespace {XTCE_12} or "
                         f"{XTCE_11})"])
    return namespace
