"""Orchestration: each pipeline reads tables, runs the transforms and quality gates below it,
and writes its results in one commit per table.

- :func:`ingest_delivery` (``pipelines.ingest``): a delivery into bronze, silver and quarantine.
- :func:`run_study` (``pipelines.study``, with ``pipelines.analyses`` for the result tables and
  ``pipelines.runs`` for the run record): a study file into its Delta tables and report.
- ``pipelines.refresh.refresh``: the ingest, then every study whose inputs changed.
- ``pipelines.snapshot``: which table versions a run or ``--as-of`` reads.

The names are imported on first use, so ``import rxcohort.pipelines.snapshot`` does not start
importing pyspark.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "IngestResult": "rxcohort.pipelines.ingest",
    "TableCounts": "rxcohort.pipelines.ingest",
    "ingest_delivery": "rxcohort.pipelines.ingest",
    "StudyRun": "rxcohort.pipelines.study",
    "run_study": "rxcohort.pipelines.study",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rxcohort.pipelines' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = sorted(_EXPORTS)
