"""Bronze rows to silver: typing, normalisation, hard rules, duplicates, returns and DDD.

Pure transforms (DataFrames in, DataFrames out; no reads, writes or collects). Each
``classify_*`` returns every bronze row exactly once, with its typed values (``t_<column>``),
a ``status`` and, for quarantined rows, a ``reason`` and a ``reason_detail``:

* ``clean`` - goes to silver;
* ``duplicate`` - an exact copy (same key, same normalised content) of a clean row: removed
  and counted;
* ``quarantined`` - failed a hard rule: goes to ``quarantine/<table>`` with its raw values.

A row gets the first reason that applies, in the order of the rule lists below, so every row
is counted once and ``rows read = clean + quarantined + duplicates`` holds by construction;
the pipeline checks it anyway, against the written tables.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from rxcohort.contract import SEX_CODES
from rxcohort.schemas import RAW_COLUMNS, SILVER_DISPENSINGS, SILVER_PERSONS, SILVER_PRESCRIBERS

CLEAN = "clean"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"

# Reason codes, in the order they are tested. Documented in docs/ingest.md.
WRONG_FIELD_COUNT = "wrong_field_count"
MISSING_REQUIRED_FIELD = "missing_required_field"
UNPARSEABLE_DATE = "unparseable_date"
UNPARSEABLE_NUMBER = "unparseable_number"
INVALID_VALUE = "invalid_value"
MALFORMED_ATC = "malformed_atc"
DATE_OUTSIDE_FILE_YEAR = "date_outside_file_year"
DATE_OUTSIDE_PERIOD = "date_outside_period"
ZERO_PACKS = "zero_packs"
UNKNOWN_PERSON = "unknown_person"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
UNMATCHED_RETURN = "unmatched_return"
RETURN_EXCEEDS_DISPENSED = "return_exceeds_dispensed"

REASONS: dict[str, tuple[str, ...]] = {
    "persons": (
        WRONG_FIELD_COUNT,
        MISSING_REQUIRED_FIELD,
        UNPARSEABLE_NUMBER,
        INVALID_VALUE,
        UNPARSEABLE_DATE,
        CONFLICTING_DUPLICATE,
    ),
    "prescribers": (
        WRONG_FIELD_COUNT,
        MISSING_REQUIRED_FIELD,
        INVALID_VALUE,
        CONFLICTING_DUPLICATE,
    ),
    "dispensings": (
        WRONG_FIELD_COUNT,
        MISSING_REQUIRED_FIELD,
        UNPARSEABLE_DATE,
        UNPARSEABLE_NUMBER,
        INVALID_VALUE,
        MALFORMED_ATC,
        DATE_OUTSIDE_FILE_YEAR,
        DATE_OUTSIDE_PERIOD,
        ZERO_PACKS,
        UNKNOWN_PERSON,
        CONFLICTING_DUPLICATE,
        UNMATCHED_RETURN,
        RETURN_EXCEEDS_DISPENSED,
    ),
}

ATC_REGEX = r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# What the contract calls a decimal: '.' as decimal mark, an optional exponent. Checked before
# the cast, so that no engine's own number syntax (Java's 1d, 0x1p3) decides what parses.
_DECIMAL = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
_INTEGER = r"^[+-]?[0-9]+$"
PROFESSIONS = ("physician", "dentist", "nurse", "other")
REIMBURSEMENTS = ("blue", "white", "h")
_EPSILON = 1e-9
# What "whitespace" means when values are trimmed: the characters of Java's and Python's \s
# in ASCII (space, tab, line feed, vertical tab, form feed, carriage return).
_WHITESPACE = " \t\n\x0b\f\r"
# A return nets against dispensings of the same product in this many days up to its date.
RETURN_WINDOW_DAYS = 14

LINEAGE = ("source_file", "source_sha256", "line_number", "load_id", "load_time")
# (source_file, line_number) names one bronze row; flags are joined back on it.
ROW_KEY = ["source_file", "line_number"]

# Writes an intermediate frame somewhere and returns a frame that reads it back; the name says
# what it is. The ingest passes one that writes Parquet to its scratch directory, so each
# intermediate is computed once and Spark plans the joins after it with its real size.
Materialise = Callable[[DataFrame, str], DataFrame]


def as_is(frame: DataFrame, name: str) -> DataFrame:
    """The identity :data:`Materialise`: keep the plan whole (small frames, tests)."""
    return frame


# --------------------------------------------------------------------------------------------
# Normalisation helpers


def _trimmed(table: str, frame: DataFrame) -> DataFrame:
    """Add ``s_<column>``: every raw column trimmed of any whitespace, empty as null."""
    texts = []
    for column in RAW_COLUMNS[table]:
        trimmed = F.btrim(F.col(column), F.lit(_WHITESPACE))
        texts.append(F.when(trimmed != "", trimmed).alias(f"s_{column}"))
    return frame.select("*", *texts)


def _s(column: str) -> Column:
    return F.col(f"s_{column}")


def _number(column: str) -> Column:
    """A finite double with '.' as decimal mark, else null."""
    value = F.when(_s(column).rlike(_DECIMAL), _s(column).try_cast("double"))
    return F.when(~F.isnan(value) & (F.abs(value) != F.lit(float("inf"))), value)


def _integer(column: str) -> Column:
    return F.when(_s(column).rlike(_INTEGER), _s(column).try_cast("int"))


def _date(column: str) -> Column:
    # The pattern admits only YYYY-MM-DD, so a cast is the same parse on every engine; try_cast
    # makes an impossible day (2013-02-30) null rather than an error.
    return F.when(_s(column).rlike(_ISO_DATE), _s(column).try_cast("date"))


def _unparseable(column: str) -> Column:
    """Something was delivered but it does not parse."""
    return _s(column).isNotNull() & F.col(f"t_{column}").isNull()


def _drop_trimmed(frame: DataFrame) -> DataFrame:
    return frame.select(*[c for c in frame.columns if not c.startswith("s_")])


def _with_rules(frame: DataFrame, rules: list[tuple[str, str, Column]]) -> DataFrame:
    """Add ``reason`` and ``reason_detail`` of the first rule whose condition holds."""
    hits = [
        F.when(condition, F.struct(F.lit(code).alias("r"), F.lit(what).alias("d")))
        for code, what, condition in rules
    ]
    first = F.coalesce(*hits)
    return frame.select("*", first.alias("_hit")).select(
        *[c for c in frame.columns],
        F.col("_hit.r").alias("reason"),
        F.col("_hit.d").alias("reason_detail"),
    )


def _wrong_fields(table: str) -> tuple[str, str, Column]:
    n = len(RAW_COLUMNS[table])
    return (WRONG_FIELD_COUNT, f"expected {n} fields", F.col("field_count") != n)


def _content_hash(columns: list[str]) -> Column:
    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)


def _mark_duplicates(frame: DataFrame, *, key: str, content: list[str]) -> DataFrame:
    """Set ``status`` after the duplicate rule (:func:`_duplicate_flags`), kept whole: for the
    small tables (persons, prescribers), whose plans need no intermediate results written."""
    return _apply_flags(frame, _duplicate_flags(frame, key=key, content=content, materialise=as_is))


# --------------------------------------------------------------------------------------------
# persons


def classify_persons(bronze: DataFrame) -> DataFrame:
    """Bronze person rows, typed, with status / reason (see module docstring)."""
    typed = _trimmed("persons", bronze).select(
        "*",
        _s("person_id").alias("t_person_id"),
        _integer("sex").alias("t_sex"),
        _integer("birth_year").alias("t_birth_year"),
        _date("death_date").alias("t_death_date"),
        _date("emigration_date").alias("t_emigration_date"),
        _s("county").alias("t_county"),
    )
    rules = [
        _wrong_fields("persons"),
        (MISSING_REQUIRED_FIELD, "person_id", F.col("t_person_id").isNull()),
        (UNPARSEABLE_NUMBER, "sex", _unparseable("sex")),
        (UNPARSEABLE_NUMBER, "birth_year", _unparseable("birth_year")),
        (INVALID_VALUE, "sex", ~F.col("t_sex").isin(*SEX_CODES.values())),
        (UNPARSEABLE_DATE, "death_date", _unparseable("death_date")),
        (UNPARSEABLE_DATE, "emigration_date", _unparseable("emigration_date")),
    ]
    content = ["t_sex", "t_birth_year", "t_death_date", "t_emigration_date", "t_county"]
    checked = _drop_trimmed(_with_rules(typed, rules))
    return _mark_duplicates(checked, key="t_person_id", content=content)


def select_silver_persons(classified: DataFrame) -> DataFrame:
    clean = classified.where(F.col("status") == CLEAN)
    return _select_silver(clean, SILVER_PERSONS)


# --------------------------------------------------------------------------------------------
# prescribers


def classify_prescribers(bronze: DataFrame) -> DataFrame:
    typed = _trimmed("prescribers", bronze).select(
        "*",
        _s("prescriber_id").alias("t_prescriber_id"),
        F.lower(_s("profession")).alias("t_profession"),
        F.lower(_s("specialty")).alias("t_specialty"),
    )
    rules = [
        _wrong_fields("prescribers"),
        (MISSING_REQUIRED_FIELD, "prescriber_id", F.col("t_prescriber_id").isNull()),
        (INVALID_VALUE, "profession", ~F.col("t_profession").isin(*PROFESSIONS)),
    ]
    content = ["t_profession", "t_specialty"]
    checked = _drop_trimmed(_with_rules(typed, rules))
    return _mark_duplicates(checked, key="t_prescriber_id", content=content)


def select_silver_prescribers(classified: DataFrame) -> DataFrame:
    clean = classified.where(F.col("status") == CLEAN)
    return _select_silver(clean, SILVER_PRESCRIBERS)


# --------------------------------------------------------------------------------------------
# dispensings


def classify_dispensings(
    bronze: DataFrame,
    persons: DataFrame,
    files: DataFrame,
    who_ddd: DataFrame,
    *,
    return_window_days: int = RETURN_WINDOW_DAYS,
    materialise: Materialise = as_is,
) -> DataFrame:
    """Bronze dispensing rows, typed, with DDD and status / reason.

    ``persons`` is the classified persons frame (its clean rows are the known persons);
    ``files`` has one row per source_file with file_year, period_start and period_end;
    ``who_ddd`` is :func:`rxcohort.reference.who_ddd_frame`.

    Built to scale with the rows: every rule that looks at one row is applied in one pass;
    the two rules that compare rows (duplicates, returns) first find the few keys involved from
    a narrow projection, then look at only those keys' rows, and their verdicts are joined back
    by ``(source_file, line_number)``. No step shuffles the whole, wide frame.
    ``materialise`` (see :data:`Materialise`) is applied to the checked rows and to each
    intermediate result.
    """
    checked = materialise(
        _checked_dispensings(bronze, persons, files, materialise), CHECKED_DISPENSINGS
    )
    duplicates = materialise(
        _duplicate_flags(
            checked, key="t_dispensing_id", content=_DISPENSING_CONTENT, materialise=materialise
        ),
        "duplicate_flags",
    )
    deduplicated = _apply_flags(checked, duplicates)
    returns = materialise(
        _return_flags(deduplicated, window_days=return_window_days, materialise=materialise),
        "return_flags",
    )
    return add_ddd(_apply_flags(deduplicated, returns), who_ddd)


CHECKED_DISPENSINGS = "checked"  # the name the checked rows are materialised under

_DISPENSING_CONTENT = [
    "t_person_id",
    "t_dispense_date",
    "t_atc_code",
    "t_product_id",
    "t_product_name",
    "t_magistral",
    "t_strength_mg",
    "t_units_per_pack",
    "t_packs",
    "t_ddd_per_pack",
    "t_prescriber_id",
    "t_reimbursement",
    "t_reimbursement_code",
]


def _dispensing_types() -> dict[str, Column]:
    """The typed value of each raw dispensing column (over its trimmed ``s_`` column)."""
    return {
        "t_dispensing_id": _s("dispensing_id"),
        "t_person_id": _s("person_id"),
        "t_dispense_date": _date("dispense_date"),
        "t_atc_code": F.upper(_s("atc_code")),
        "t_product_id": _s("product_id"),
        "t_product_name": _s("product_name"),
        "t_magistral": F.when(_s("magistral") == "1", True).when(_s("magistral") == "0", False),
        **{f"t_{c}": _number(c) for c in _DISPENSING_NUMBERS},
        "t_prescriber_id": _s("prescriber_id"),
        "t_reimbursement": F.lower(_s("reimbursement")),
        "t_reimbursement_code": F.upper(_s("reimbursement_code")),
    }


_DISPENSING_NUMBERS = ["packs", "strength_mg", "units_per_pack", "ddd_per_pack"]


def _checked_dispensings(
    bronze: DataFrame, persons: DataFrame, files: DataFrame, materialise: Materialise
) -> DataFrame:
    """Typed rows with the reason of the first one-row rule that fails (or null)."""
    numbers = _DISPENSING_NUMBERS
    periods = F.broadcast(files.select("source_file", "file_year", "period_start", "period_end"))
    typed = (
        _trimmed("dispensings", bronze)
        .join(periods, "source_file", "left")
        .select("*", *[value.alias(name) for name, value in _dispensing_types().items()])
        .select("*", F.year("t_dispense_date").alias("t_dispense_year"))
    )

    required = ["dispensing_id", "person_id", "dispense_date", "atc_code", "packs"]
    rules: list[tuple[str, str, Column]] = [_wrong_fields("dispensings")]
    rules += [(MISSING_REQUIRED_FIELD, c, _s(c).isNull()) for c in required]
    rules.append((UNPARSEABLE_DATE, "dispense_date", F.col("t_dispense_date").isNull()))
    rules += [(UNPARSEABLE_NUMBER, c, _unparseable(c)) for c in numbers]
    rules += [
        (INVALID_VALUE, "magistral", _s("magistral").isNotNull() & F.col("t_magistral").isNull()),
        (INVALID_VALUE, "reimbursement", ~F.col("t_reimbursement").isin(*REIMBURSEMENTS)),
        (INVALID_VALUE, "strength_mg", F.col("t_strength_mg") < 0),
        (INVALID_VALUE, "units_per_pack", F.col("t_units_per_pack") <= 0),
        (INVALID_VALUE, "ddd_per_pack", F.col("t_ddd_per_pack") < 0),
        (MALFORMED_ATC, "atc_code", ~F.col("t_atc_code").rlike(ATC_REGEX)),
        (
            DATE_OUTSIDE_FILE_YEAR,
            "dispense_date",
            F.col("file_year").isNotNull() & (F.col("t_dispense_year") != F.col("file_year")),
        ),
        (
            DATE_OUTSIDE_PERIOD,
            "dispense_date",
            (F.col("t_dispense_date") < F.col("period_start"))
            | (F.col("t_dispense_date") > F.col("period_end")),
        ),
        (ZERO_PACKS, "packs", F.col("t_packs") == 0),
    ]
    checked = _drop_trimmed(_with_rules(typed, rules))

    # The known persons: one small column, written once so the join can broadcast it.
    known = materialise(
        persons.where(F.col("status") == CLEAN)
        .select(F.col("t_person_id").alias("_known_person"))
        .distinct(),
        "known_persons",
    )
    joined = checked.join(known, checked["t_person_id"] == known["_known_person"], "left")
    unknown = F.col("reason").isNull() & F.col("_known_person").isNull()
    others = [c for c in checked.columns if c not in ("reason", "reason_detail")]
    return joined.select(
        *others,
        F.when(unknown, F.lit(UNKNOWN_PERSON)).otherwise(F.col("reason")).alias("reason"),
        F.when(unknown, F.lit("person_id"))
        .otherwise(F.col("reason_detail"))
        .alias("reason_detail"),
    )


def dispensing_keys(bronze: DataFrame) -> DataFrame:
    """What ties a bronze dispensing row to others in the rules that compare rows: its row key,
    ``_id`` (the trimmed dispensing_id: duplicates), ``_person`` (known or not), ``_group``
    (a hash of person, ATC code and product: returns), ``_day`` (days since 1970, null when the
    date does not parse) and ``_return`` (packs below 0). The same expressions as
    :func:`classify_dispensings`, so that the rows it relates are the rows these relate."""
    types = _dispensing_types()
    needed = ["t_dispensing_id", "t_person_id", "t_dispense_date", "t_atc_code", "t_product_id"]
    typed = _trimmed("dispensings", bronze).select(
        *ROW_KEY, *[types[name].alias(name) for name in (*needed, "t_packs")]
    )
    return keys_of_checked(typed)


def keys_of_checked(checked: DataFrame) -> DataFrame:
    """:func:`dispensing_keys` from the typed columns of rows checked by
    :func:`classify_dispensings` (the typing is the same: ``t_<column>``)."""
    product = F.coalesce(F.col("t_product_id"), F.lit(""))
    return checked.select(
        *ROW_KEY,
        F.col("t_dispensing_id").alias("_id"),
        F.col("t_person_id").alias("_person"),
        F.xxhash64(F.col("t_person_id"), F.col("t_atc_code"), product).alias("_group"),
        F.datediff(F.col("t_dispense_date"), F.lit("1970-01-01").cast("date")).alias("_day"),
        F.coalesce(F.col("t_packs") < 0, F.lit(False)).alias("_return"),
    )


def _flag_columns(status: Column, reason: Column, detail: Column) -> list[Column]:
    return [
        *[F.col(c) for c in ROW_KEY],
        status.alias("_flag_status"),
        reason.alias("_flag_reason"),
        detail.alias("_flag_detail"),
    ]


def _duplicate_flags(
    frame: DataFrame, *, key: str, content: list[str], materialise: Materialise
) -> DataFrame:
    """Verdicts for rows (with no reason yet) whose key occurs more than once.

    Same key and content: all but the first (by source_file, line_number) are duplicates; same
    key, different content: every version is quarantined as conflicting_duplicate. The keys
    that occur more than once are found from a 64-bit hash of the key alone (a collision only
    brings a few more rows to the exact comparison); only their rows are compared.
    """
    candidates = frame.where(F.col("reason").isNull()).select(
        *ROW_KEY, key, *content, F.xxhash64(F.col(key)).alias("_key_hash")
    )
    repeated = materialise(
        candidates.groupBy("_key_hash")
        .agg(F.count(F.lit(1)).alias("_n"))
        .where(F.col("_n") > 1)
        .select("_key_hash"),
        "repeated_keys",
    )
    suspects = candidates.join(repeated, "_key_hash", "left_semi")
    group = Window.partitionBy(key)
    first = group.orderBy(*ROW_KEY)
    compared = suspects.select("*", _content_hash(content).alias("_content")).select(
        *ROW_KEY,
        (F.min("_content").over(group) != F.max("_content").over(group)).alias("_differ"),
        F.row_number().over(first).alias("_rank"),
    )
    return compared.where(F.col("_differ") | (F.col("_rank") > 1)).select(
        *_flag_columns(
            F.when(F.col("_differ"), F.lit(QUARANTINED)).otherwise(F.lit(DUPLICATE)),
            F.when(F.col("_differ"), F.lit(CONFLICTING_DUPLICATE)),
            F.when(F.col("_differ"), F.lit(key.removeprefix("t_"))),
        )
    )


def _return_flags(frame: DataFrame, *, window_days: int, materialise: Materialise) -> DataFrame:
    """Verdicts for returns with nothing to net against.

    A return (packs < 0) nets against the clean dispensings (packs > 0) of the same product
    (person, ATC code, product_id) in the ``window_days`` days up to and including its date:
    a pharmacy takes a package back, or corrects a registration, shortly after the dispensing.
    It is ``unmatched_return`` when there is no such dispensing, and
    ``return_exceeds_dispensed`` when the clean returns of that product in the window add up to
    more packs than were dispensed in it (the DDD would be negative after netting). A return
    quarantined by this rule still counts against the window: a cautious rule that never lets
    a net-negative product into silver.

    Only the rows of products that have a clean return are looked at (found from a hash of the
    product key, as in :func:`_duplicate_flags`).
    """
    product = F.coalesce(F.col("t_product_id"), F.lit(""))
    clean = frame.where(F.col("status") == CLEAN).select(
        *ROW_KEY,
        "t_person_id",
        "t_atc_code",
        product.alias("_product"),
        "t_dispense_date",
        "t_packs",
        F.xxhash64("t_person_id", "t_atc_code", product).alias("_product_hash"),
    )
    returned = materialise(
        clean.where(F.col("t_packs") < 0).select("_product_hash").distinct(), "return_products"
    )
    rows = clean.join(returned, "_product_hash", "left_semi")
    day = F.datediff(F.col("t_dispense_date"), F.lit("1970-01-01").cast("date"))
    window = (
        Window.partitionBy("t_person_id", "t_atc_code", "_product")
        .orderBy(day)
        .rangeBetween(-window_days, 0)
    )
    dispensed = F.sum(F.when(F.col("t_packs") > 0, F.col("t_packs")).otherwise(0.0)).over(window)
    returned_packs = F.sum(F.when(F.col("t_packs") < 0, -F.col("t_packs")).otherwise(0.0)).over(
        window
    )
    flagged = rows.select("*", dispensed.alias("_dispensed"), returned_packs.alias("_returned"))
    is_return = F.col("t_packs") < 0
    unmatched = is_return & (F.col("_dispensed") <= 0)
    exceeds = is_return & ~unmatched & (F.col("_returned") > F.col("_dispensed") + _EPSILON)
    return flagged.where(unmatched | exceeds).select(
        *_flag_columns(
            F.lit(QUARANTINED),
            F.when(unmatched, F.lit(UNMATCHED_RETURN)).otherwise(F.lit(RETURN_EXCEEDS_DISPENSED)),
            F.lit("packs"),
        )
    )


def _apply_flags(frame: DataFrame, flags: DataFrame) -> DataFrame:
    """``frame`` with the verdicts of ``flags`` (rows named by ROW_KEY) applied.

    A row without a verdict keeps its status - or, before any status is set, is ``clean``
    when no rule gave it a reason and ``quarantined`` otherwise.
    """
    joined = frame.join(flags, ROW_KEY, "left")
    if "status" in frame.columns:
        current = F.col("status")
    else:
        current = F.when(F.col("reason").isNull(), F.lit(CLEAN)).otherwise(F.lit(QUARANTINED))
    others = [c for c in frame.columns if c not in ("reason", "reason_detail", "status")]
    return joined.select(
        *others,
        F.coalesce(F.col("reason"), F.col("_flag_reason")).alias("reason"),
        F.coalesce(F.col("reason_detail"), F.col("_flag_detail")).alias("reason_detail"),
        F.coalesce(F.col("_flag_status"), current).alias("status"),
    )


def add_ddd(dispensings: DataFrame, who_ddd: DataFrame) -> DataFrame:
    """Add ``t_ddd`` and ``t_ddd_method`` (CONTRACT §5 rule 8) to typed dispensings.

    ``packs * ddd_per_pack`` when the registry gives DDD per pack ('registry'); otherwise
    ``packs * units_per_pack * strength_mg / DDD in mg`` when the WHO DDD of the ATC code in
    the year of dispensing is known in mg ('computed'); otherwise null. Returns subtract.
    """
    reference = who_ddd.select(
        F.col("atc_code").alias("_ref_atc"),
        F.col("valid_from_year").alias("_ref_from"),
        F.col("valid_to_year").alias("_ref_to"),
        F.col("ddd_mg").alias("_ref_ddd_mg"),
    )
    year = F.col("t_dispense_year")
    on = (
        (F.col("t_atc_code") == F.col("_ref_atc"))
        & (F.col("_ref_from").isNull() | (year >= F.col("_ref_from")))
        & (F.col("_ref_to").isNull() | (year <= F.col("_ref_to")))
    )
    joined = dispensings.join(F.broadcast(reference), on, "left")
    registry = F.col("t_packs") * F.col("t_ddd_per_pack")
    computed = (
        F.col("t_packs") * F.col("t_units_per_pack") * F.col("t_strength_mg") / F.col("_ref_ddd_mg")
    )
    has_registry = F.col("t_ddd_per_pack").isNotNull() & F.col("t_packs").isNotNull()
    has_computed = (
        F.col("t_packs").isNotNull()
        & F.col("t_units_per_pack").isNotNull()
        & F.col("t_strength_mg").isNotNull()
        & (F.col("_ref_ddd_mg") > 0)
    )
    return joined.select(
        *dispensings.columns,
        F.when(has_registry, registry).when(has_computed, computed).cast("double").alias("t_ddd"),
        F.when(has_registry, F.lit("registry"))
        .when(has_computed, F.lit("computed"))
        .alias("t_ddd_method"),
    )


def select_silver_dispensings(classified: DataFrame) -> DataFrame:
    clean = classified.where(F.col("status") == CLEAN)
    return _select_silver(clean, SILVER_DISPENSINGS)


# --------------------------------------------------------------------------------------------
# shared projections


def _select_silver(clean: DataFrame, schema) -> DataFrame:  # type: ignore[no-untyped-def]
    columns = []
    for field in schema.fields:
        if field.name in ("source_file", "load_id"):
            source = F.col(field.name)
        else:
            source = F.col(f"t_{field.name}")
        columns.append(source.cast(field.dataType).alias(field.name))
    return clean.select(*columns)


def select_quarantine(classified: DataFrame, *, table: str) -> DataFrame:
    """Quarantined rows: raw values as delivered, reason, detail and lineage."""
    columns = [
        *RAW_COLUMNS[table],
        "reason",
        "reason_detail",
        *LINEAGE,
        "field_count",
        "raw_line",
    ]
    return classified.where(F.col("status") == QUARANTINED).select(*columns)


def summarise_statuses(classified: DataFrame, *, load_id: str) -> DataFrame:
    """Rows per status and reason, split into this load's rows and everything else."""
    return classified.groupBy(
        (F.col("load_id") == F.lit(load_id)).alias("this_load"), "status", "reason"
    ).agg(F.count(F.lit(1)).alias("rows"))
