"""Data-quality suites (Great Expectations 1.x): load, run, gate, report.

Suites live as JSON under ``expectations/`` (one per stage); every expectation says whether it
is ``hard`` (its failure stops the job before it commits) or ``soft`` (reported only).
"""

from __future__ import annotations

from rxcohort.quality.report import render_quality_report
from rxcohort.quality.runner import (
    ExpectationOutcome,
    name_failing_files,
    outcome_from_result,
    require_hard_expectations,
    run_suite,
)
from rxcohort.quality.suites import Suite, load_suite, load_suites

__all__ = [
    "ExpectationOutcome",
    "Suite",
    "load_suite",
    "load_suites",
    "name_failing_files",
    "outcome_from_result",
    "render_quality_report",
    "require_hard_expectations",
    "run_suite",
]
