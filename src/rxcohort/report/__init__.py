"""The study report: one self-contained HTML page per study, small counts masked.

``build_report(spark, warehouse=..., study_id=...)`` writes
``<warehouse>/studies/<study_id>/report.html``; see docs/report.md for its sections.
"""

from __future__ import annotations

from rxcohort.report.build import REPORT_FILE, build_report, collect_report_data, render_report
from rxcohort.report.sections import SECTION_IDS, ReportData, RunInfo

__all__ = [
    "REPORT_FILE",
    "SECTION_IDS",
    "ReportData",
    "RunInfo",
    "build_report",
    "collect_report_data",
    "render_report",
]
