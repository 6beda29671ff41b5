"""Ingestion's parts: reading a delivery (``delivery``, ``records``), bronze, the row rules
that route each row to silver or quarantine (``rules``), file stamps and the incremental plan.

The orchestration that runs them - :func:`rxcohort.pipelines.ingest_delivery` - lives in
``rxcohort.pipelines.ingest``. See docs/ingest.md for the layers, the reason codes, the
row-count invariant and re-delivery.
"""
