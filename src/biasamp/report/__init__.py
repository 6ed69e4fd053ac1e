"""Reports: a self-contained HTML page and a markdown file from a run directory's tables.

The page is a list of sections (see `biasamp.report.core.section`); each turns the run's
tables into an HTML and a markdown fragment, or is left out when its inputs are absent.
"""

from biasamp.report.core import (
    CONDITION_ORDER,
    Fragment,
    ReportPaths,
    RunTables,
    build_report,
    order_conditions,
    remove_section,
    section,
    sections,
)
from biasamp.report.render import Figures, Table, esc, md_esc

__all__ = [
    "CONDITION_ORDER",
    "Figures",
    "Fragment",
    "ReportPaths",
    "RunTables",
    "Table",
    "build_report",
    "esc",
    "md_esc",
    "order_conditions",
    "remove_section",
    "section",
    "sections",
]
