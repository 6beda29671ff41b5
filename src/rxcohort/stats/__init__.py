"""Outcome statistics of a study: before/after DDD, users, difference in differences,
responders, monthly trajectories and interrupted time series.

Pure functions on small pandas frames collected once at the pipeline's edge; no I/O. The
methods and every output column are described in docs/statistics.md.
"""

from __future__ import annotations

from rxcohort.stats.frames import COLUMNS, RESULT_SCHEMAS, to_spark
from rxcohort.stats.its import summarise_its, summarise_trajectories
from rxcohort.stats.outcomes import (
    contrast_name,
    person_outcomes,
    summarise_did_results,
    summarise_group_results,
    summarise_responders,
)
from rxcohort.stats.tables import compute_outcome_tables, default_contrasts

__all__ = [
    "COLUMNS",
    "RESULT_SCHEMAS",
    "compute_outcome_tables",
    "contrast_name",
    "default_contrasts",
    "person_outcomes",
    "summarise_did_results",
    "summarise_group_results",
    "summarise_its",
    "summarise_responders",
    "summarise_trajectories",
    "to_spark",
]
