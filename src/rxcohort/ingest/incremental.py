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
apart (multi-dose packs) do not make it iterate. The sets are kept as *whole files* (the
changed ones) plus a small set of row keys outside them, so that no join has to hold a whole
file's keys in memory (a hash join's build side cannot spill): ids are looked up only among
those shared by two rows, which are few, and windows only around products with a return.

The ids shared by two rows are found as 64-bit hashes (:func:`shared_ids`). A load keeps them
for the next one (:data:`SHARED_IDS`), which then finds its own from them and the changed
files alone (:func:`_shared_since`): an id of the changed files can tie a row of another file
only if the earlier version of those files had it (then the kept set has it) or it is new.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rxcohort.ingest.rules import ROW_KEY, Materialise

SHARED_IDS = "incremental_shared_ids"  # the name the shared id hashes are materialised under
# At most this many ids of the changed files that their earlier version did not have are
# looked up in the other files from the kept shared ids (a broadcast); more (a new year's
# file): one aggregation over the ids of the whole bronze instead.
FRESH_IDS_MOST = 1_000_000


@dataclass(frozen=True)
class AffectedRows:
    """The rows whose verdict may change (closed under dispensing_id, so that silver's row of
    an id is replaced as a whole), and the *context* to classify them in so that they get the
    verdicts a full classification gives: each is every row of ``files`` plus the row keys of
    ``rows_outside`` / ``context_outside`` (rows of other files)."""

    files: tuple[str, ...]
    rows_outside: DataFrame
    context_outside: DataFrame

    def _in_files(self) -> Column:
        return F.col("source_file").isin(*self.files) if self.files else F.lit(False)

    def rows_of(self, frame: DataFrame) -> DataFrame:
        """The rows of ``frame`` (with the row key) whose verdict may change."""
        return self._select(frame, self.rows_outside)

    def context_of(self, frame: DataFrame) -> DataFrame:
        """The rows of ``frame`` to classify."""
        return self._select(frame, self.context_outside)

    def _select(self, frame: DataFrame, outside: DataFrame) -> DataFrame:
        inside = frame.where(self._in_files())
        others = frame.where(~self._in_files()).join(F.broadcast(outside), ROW_KEY, "left_semi")
        return inside.unionByName(others)

    def not_rows_of(self, frame: DataFrame) -> DataFrame:
        """The rows of ``frame`` whose verdict stays."""
        return frame.where(~self._in_files()).join(
            F.broadcast(self.rows_outside), ROW_KEY, "left_anti"
        )


class _Ties:
    """How rows tie each other's verdicts: a shared dispensing_id, or a return's window in
    the same product. Holds the few keys that can tie (ids shared by two rows, products with a
    return), so that each lookup is a join against a small broadcast side."""

    def __init__(
        self,
        keys: DataFrame,
        *,
        returns: DataFrame,
        in_files: Column,
        removed: DataFrame,
        kept_shared: DataFrame | None,
        window_days: int,
        materialise: Materialise,
    ) -> None:
        self.keys, self.outside = keys, keys.where(~in_files)
        self.window_days, self.materialise = window_days, materialise
        self.windows = 0
        # Products with a return anywhere (before or after the load): only they tie rows by date.
        self.with_return = materialise(
            returns.select("_group")
            .unionByName(removed.where("_return").select("_group"))
            .distinct(),
            "incremental_return_groups",
        )
        shared = None
        if kept_shared is not None:
            shared = _shared_since(
                kept_shared, keys, removed, in_files=in_files, materialise=materialise
            )
        if shared is None:
            shared = shared_ids(keys, removed, in_files=in_files)
        self.shared = materialise(shared, SHARED_IDS)

    def partners(self, rows: DataFrame) -> DataFrame:
        """Rows of other files sharing a dispensing_id with one of ``rows`` (or an id of the
        same hash: such a row keeps its verdict)."""
        hit = (
            rows.select("_id")
            .where(F.col("_id").isNotNull())
            .distinct()
            .withColumn("_h", F.xxhash64("_id"))
            .join(F.broadcast(self.shared), "_h", "left_semi")
            .select("_id")
        )
        return self.outside.join(F.broadcast(hit), "_id", "left_semi")

    def in_window(self, rows: DataFrame, *, targets: DataFrame) -> DataFrame:
        """Rows of ``targets`` within the window of a row of ``rows`` in the same product
        (either side: a superset that costs nothing)."""
        anchors = self.materialise(
            rows.where(F.col("_day").isNotNull())
            .join(F.broadcast(self.with_return), "_group", "left_semi")
            .select("_group", F.col("_day").alias("_anchor_day"))
            .distinct(),
            f"incremental_anchors_{self.windows}",
        )
        self.windows += 1
        # Within the anchors' days and a window either side: a reader skips the row groups of
        # other days (the keys of a file lie in its line order, mostly its days').
        (first, last) = anchors.agg(F.min("_anchor_day"), F.max("_anchor_day")).first()
        if first is None:
            return targets.where(F.lit(False)).select(*self.keys.columns)
        days = F.col("_day").between(first - self.window_days, last + self.window_days)
        return (
            targets.where(days)
            .join(F.broadcast(anchors), "_group")
            .where(F.abs(F.col("_day") - F.col("_anchor_day")) <= self.window_days)
            .select(*self.keys.columns)
        )


def _hash(column: str) -> Column:
    return F.xxhash64(column).alias("_h")


def shared_ids(
    keys: DataFrame, removed: DataFrame | None = None, *, in_files: Column | None = None
) -> DataFrame:
    """The 64-bit hashes (``_h``) of the ids that may tie two rows: repeated in ``keys`` (the
    new bronze), or an id of ``removed`` found outside the changed files (``in_files``: a row
    of keys is of a changed file). One aggregation (it spills) over the hashes of every id,
    cheaper to group than the ids themselves. A hash collision only adds an id that ties
    nothing: its rows are classified again with their context and keep their verdicts. Kept
    after each load (see :func:`_shared_since`), it holds every id repeated in bronze."""
    in_files = F.lit(False) if in_files is None else in_files
    tagged = keys.where(F.col("_id").isNotNull()).select(
        _hash("_id"),
        F.lit(1).alias("_new"),
        F.when(in_files, 0).otherwise(1).alias("_out"),
        F.lit(0).alias("_gone"),
    )
    if removed is not None:
        tagged = tagged.unionByName(
            removed.where(F.col("_id").isNotNull()).select(
                _hash("_id"),
                F.lit(0).alias("_new"),
                F.lit(0).alias("_out"),
                F.lit(1).alias("_gone"),
            )
        )
    counted = tagged.groupBy("_h").agg(
        F.sum("_new").alias("_n_new"), F.max("_out").alias("_out"), F.max("_gone").alias("_gone")
    )
    ties = (F.col("_n_new") > 1) | ((F.col("_gone") == 1) & (F.col("_out") == 1))
    return counted.where(ties).select("_h")


def _shared_since(
    kept: DataFrame,
    keys: DataFrame,
    removed: DataFrame,
    *,
    in_files: Column,
    materialise: Materialise,
) -> DataFrame | None:
    """:func:`shared_ids` from ``kept`` (those of the bronze before this load: the rows of
    ``removed`` and of the other files) and the changed files alone; None when too many of
    their ids are new (:data:`FRESH_IDS_MOST`).

    An id tying two rows now is repeated among the other files (then it was before: kept), or
    repeated among the changed files (counted here), or in both. In the last case, and for an
    id of ``removed`` found in the other files, either the earlier version had it too (then it
    was repeated before: kept) or it is new to the changed files: only those few are looked up
    in the other files. All of it by hash, as :func:`shared_ids`."""
    changed = keys.where(in_files & F.col("_id").isNotNull()).select(
        _hash("_id"), F.lit(1).alias("_new"), F.lit(0).alias("_gone")
    )
    gone = removed.where(F.col("_id").isNotNull()).select(
        _hash("_id"), F.lit(0).alias("_new"), F.lit(1).alias("_gone")
    )
    counted = (
        changed.unionByName(gone)
        .groupBy("_h")
        .agg(F.sum("_new").alias("_n_new"), F.max("_gone").alias("_gone"))
    )
    fresh_or_repeated = (F.col("_n_new") > 1) | ((F.col("_n_new") > 0) & (F.col("_gone") == 0))
    found = materialise(counted.where(fresh_or_repeated), "incremental_changed_ids")
    fresh = found.where(F.col("_gone") == 0).select("_h")
    n_fresh = fresh.count()
    if n_fresh > FRESH_IDS_MOST:
        return None
    shared = kept.select("_h").unionByName(found.where(F.col("_n_new") > 1).select("_h"))
    if n_fresh:
        outside = keys.where(~in_files & F.col("_id").isNotNull()).select(_hash("_id"))
        shared = shared.unionByName(outside.join(F.broadcast(fresh), "_h", "left_semi"))
    return shared.distinct()


def affected_rows(
    keys: DataFrame,
    *,
    returns: DataFrame | None = None,
    files: tuple[str, ...],
    flipped: DataFrame | None,
    removed: DataFrame,
    kept_shared: DataFrame | None = None,
    window_days: int,
    materialise: Materialise,
) -> AffectedRows:
    """The rows of ``keys`` whose verdict may change, and the context they are classified in.

    ``keys``: :func:`rxcohort.ingest.rules.dispensing_keys` of the bronze after this load;
    ``files``: the changed files (each of their rows changed); ``flipped``: rows of ``keys``
    whose person became known or unknown (or None); ``removed``: the keys of rows this load
    takes out of bronze (the earlier version of a changed file), which tie rows as well;
    ``kept_shared``: :func:`shared_ids` of the bronze before this load, when kept;
    ``returns``: the rows of ``keys`` that are returns, when kept apart (else found in
    ``keys``). The shared ids of this load are materialised as :data:`SHARED_IDS`, for the
    next one.
    """
    in_files = F.col("source_file").isin(*files) if files else F.lit(False)
    returns = materialise(
        keys.where("_return") if returns is None else returns, "incremental_returns"
    )
    ties = _Ties(
        keys,
        returns=returns,
        in_files=in_files,
        removed=removed,
        kept_shared=kept_shared,
        window_days=window_days,
        materialise=materialise,
    )
    changed = keys.where(in_files)
    # Rows that may become clean or unclean: the changed ones and their id partners ...
    seeds = changed.unionByName(removed)
    extra = ties.partners(seeds)
    if flipped is not None:
        flipped = flipped.where(~in_files)
        extra = extra.unionByName(flipped).unionByName(ties.partners(flipped))
    unsettled = materialise(extra.distinct(), "incremental_unsettled")
    # ... and the returns that net against them (or against a row taken out).
    reached = unsettled.unionByName(
        ties.in_window(seeds.unionByName(unsettled), targets=returns).where(~in_files)
    )
    reached = materialise(reached.distinct(), "incremental_reached")
    rows = materialise(
        reached.unionByName(ties.partners(reached)).select(*ROW_KEY).distinct(),
        "incremental_rows",
    )
    # What their verdicts read: the windows of the returns among them, and the id partners.
    their_returns = returns.where(in_files).unionByName(
        returns.join(F.broadcast(rows), ROW_KEY, "left_semi")
    )
    read = ties.in_window(their_returns, targets=keys.where(~in_files))
    read = materialise(read.distinct(), "incremental_read")
    context = materialise(
        rows.unionByName(read.select(*ROW_KEY))
        .unionByName(ties.partners(read).select(*ROW_KEY))
        .distinct(),
        "incremental_context",
    )
    return AffectedRows(files=tuple(files), rows_outside=rows, context_outside=context)
