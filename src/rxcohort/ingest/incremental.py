"""Incremental silver dispensings: which rows a load can change, and the rest left as it was.

A dispensing row's verdict (silver, quarantine and why, or duplicate) depends on

* the row itself and its file (one-row rules, the file's year and delivery period);
* whether its person is known (a clean row of persons.csv);
* the other rows with its dispensing_id (duplicates, conflicting duplicates);
* for a return, the rows of that person, ATC code and product within the return window before
  it - whether they are clean after the rules above, not their own return verdicts: a return
  quarantined by the return rule still counts against the window.

So the verdicts do not propagate: a change reaches the rows of the changed files, the rows of
persons who became known or unknown, the rows sharing a dispensing_id with either (or with a
row the load took out), and the returns within the window after any of these - and no further
(:func:`affected_rows`). Only these rows get a new verdict; every other row keeps the verdict
it has in silver and quarantine. To be classified right, they are classified together with
what their verdicts read: their id groups, the rows in the windows of the returns among them,
and those rows' id groups (the *context*). The result equals classifying the whole bronze
again, row for row (``tests/test_incremental.py`` checks that on deliveries that add a year,
correct a file, drop rows and change persons).

A fixed number of joins of the narrow keys, whatever the data: chains of dispensings a few days
apart (multi-dose packs) do not make it iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.ingest.rules import ROW_KEY, Materialise


@dataclass(frozen=True)
class AffectedRows:
    """``rows``: the row keys whose verdict may change (closed under dispensing_id, so that
    silver's rows of an id are replaced as a whole); ``context``: the row keys to classify so
    that ``rows`` get the verdicts a full classification gives (a superset of ``rows``)."""

    rows: DataFrame
    context: DataFrame


def affected_rows(
    keys: DataFrame,
    *,
    seeds: DataFrame,
    removed: DataFrame,
    window_days: int,
    materialise: Materialise,
) -> AffectedRows:
    """The rows of ``keys`` whose verdict may change, and the context they are classified in.

    ``keys``: :func:`rxcohort.ingest.rules.dispensing_keys` of the bronze after this load;
    ``seeds``: the rows that changed (those of the changed files, those of persons whose
    known-ness changed), with the same columns; ``removed``: the keys of rows this load takes
    out of bronze (the earlier version of a changed file), which tie rows as well.
    """
    # Products with a return anywhere (before or after the load): only they tie rows by date.
    with_return = materialise(
        keys.where("_return")
        .select("_group")
        .unionByName(removed.where("_return").select("_group"))
        .distinct(),
        "incremental_return_groups",
    )

    def same_id(rows: DataFrame) -> DataFrame:
        ids = rows.where(F.col("_id").isNotNull()).select("_id").distinct()
        return keys.join(ids, "_id", "left_semi")

    def in_window(rows: DataFrame, *, returns_only: bool) -> DataFrame:
        """Rows of ``keys`` (returns only, or all) within the window of a row of ``rows`` in
        the same product (either side: a superset that costs nothing)."""
        anchors = (
            rows.where(F.col("_day").isNotNull())
            .join(with_return, "_group", "left_semi")
            .select("_group", F.col("_day").alias("_anchor_day"))
            .distinct()
        )
        targets = keys.where(F.col("_day").isNotNull())
        if returns_only:
            targets = targets.where("_return")
        return (
            targets.join(anchors, "_group")
            .where(F.abs(F.col("_day") - F.col("_anchor_day")) <= window_days)
            .select(*keys.columns)
        )

    changed = keys.join(seeds.select(*ROW_KEY).distinct(), ROW_KEY, "left_semi")
    # Rows that may become clean or unclean: the changed ones and their id groups.
    unsettled = materialise(
        changed.unionByName(same_id(changed.unionByName(removed))).distinct(),
        "incremental_unsettled",
    )
    # ... and the returns that net against them (or against a row taken out).
    reached = unsettled.unionByName(in_window(unsettled.unionByName(removed), returns_only=True))
    rows = materialise(reached.unionByName(same_id(reached)).distinct(), "incremental_rows")
    # What their verdicts read: the windows of the returns among them, and the id groups.
    read = rows.unionByName(in_window(rows.where("_return"), returns_only=False))
    context = materialise(
        read.unionByName(same_id(read)).select(*ROW_KEY).distinct(), "incremental_context"
    )
    return AffectedRows(rows=rows.select(*ROW_KEY), context=context)
