"""Ingestion: a registry delivery into bronze, silver and quarantine, gated by quality suites.

See docs/ingest.md for the layers, the reason codes, the row-count invariant and re-delivery.
"""

from __future__ import annotations

from rxcohort.ingest.pipeline import IngestResult, TableCounts, ingest_delivery

__all__ = ["IngestResult", "TableCounts", "ingest_delivery"]
