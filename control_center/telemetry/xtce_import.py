"""Import a partner's XTCE file (OMG XTCE 1.2 or 1.1) as a TMDB document: the entry point
``isls tmdb import-xtce`` and TMDB files ending in ``.xml`` use. The import itself lives
in :mod:`control_center.telemetry.xtce`, a module per job."""

from control_center.telemetry.xtce import XTCE_11, XTCE_12, XtceImport, import_xtce

__all__ = ["XTCE_11", "XTCE_12", "XtceImport", "import_xtce"]
