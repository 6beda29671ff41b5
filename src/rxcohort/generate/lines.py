"""Events to delivered text: pseudonyms, formatted fields, injected delivery defects, CSV lines.

Lines are built as strings in Spark (``;``-separated, empty field for null, no quoting: no
field can contain ``;``) so the bytes written are fully under our control.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rxcohort.generate import catalogue as cat
from rxcohort.generate.population import as_date, person_id, prescriber_id
from rxcohort.generate.rand import item, pick, uniform
from rxcohort.schemas import DISPENSINGS_COLUMNS, PERSONS_COLUMNS, PRESCRIBERS_COLUMNS

SEP = ";"
_ID_MOD = 10**15
_ID_MUL = 205_891_132_094_649  # 3**30, coprime to 10**15
DEFECT_NAMES = tuple(name for name, _ in cat.DEFECT_KINDS)


def header(columns: tuple[str, ...]) -> str:
    return SEP.join(columns)


def join_fields(fields: list[Column]) -> Column:
    return F.concat_ws(SEP, *[F.coalesce(f.cast("string"), F.lit("")) for f in fields])


def dispensing_id(idx: Column, src: Column, k: Column, seed: int) -> Column:
    """15-digit id, a bijection of (person, regimen code, event number): unique by design."""
    key = (idx.cast("long") * 1000 + src) * 10000 + k
    offset = (seed * 2_654_435_761 + 97) % _ID_MOD
    scrambled = F.pmod(
        key.cast("decimal(20,0)") * F.lit(_ID_MUL).cast("decimal(20,0)")
        + F.lit(offset).cast("decimal(20,0)"),
        F.lit(_ID_MOD).cast("decimal(20,0)"),
    )
    return F.lpad(scrambled.cast("decimal(20,0)").cast("string"), 15, "0")


def persons_lines(persons: DataFrame, *, seed: int) -> DataFrame:
    """persons.csv rows: (sort_key, line)."""
    pid = person_id(F.col("idx"), seed)
    fields = {
        "person_id": pid,
        "sex": F.col("sex"),
        "birth_year": F.col("birth_year"),
        "death_date": as_date(F.col("death_day")),
        "emigration_date": as_date(F.col("emigration_day")),
        "county": F.col("county"),
    }
    assert tuple(fields) == PERSONS_COLUMNS
    return persons.select(pid.alias("sort_key"), join_fields(list(fields.values())).alias("line"))


def prescribers_lines(prescribers: DataFrame) -> DataFrame:
    fields = [F.col(c) for c in PRESCRIBERS_COLUMNS]
    return prescribers.select(
        F.col("prescriber_id").alias("sort_key"), join_fields(fields).alias("line")
    )


def dispensing_lines(
    events: DataFrame, *, seed: int, persons: int, defect_rate: float
) -> DataFrame:
    """One row per delivered line: year, day, dispensing_id, line, defect (kind or null), packs.

    With ``defect_rate`` > 0 that share of events gets one defect (kinds weighted by
    ``DEFECT_KINDS``); a ``duplicate`` adds a second, identical line, the others alter a field.
    """
    idx, src, k = F.col("idx"), F.col("src"), F.col("k")

    def u(purpose: str) -> Column:
        return uniform(seed, purpose, idx, src, k)

    date_s = as_date(F.col("day")).cast("string")
    atc = F.when(
        F.col("atc_new").isNotNull() & (F.col("day") >= F.col("atc_new_day")), F.col("atc_new")
    ).otherwise(F.col("atc"))
    df = events.select(
        F.year(as_date(F.col("day"))).alias("year"),
        F.col("day"),
        dispensing_id(idx, src, k, seed).alias("dispensing_id"),
        person_id(idx, seed).alias("person_id"),
        date_s.alias("dispense_date"),
        atc.alias("atc_code"),
        "product_id",
        "product_name",
        "magistral",
        F.col("strength_s").alias("strength_mg"),
        F.col("units_s").alias("units_per_pack"),
        F.col("packs").cast("string").alias("packs"),
        F.col("ddd_s").alias("ddd_per_pack"),
        F.when(F.col("presc").isNotNull(), prescriber_id(F.col("presc"), seed)).alias(
            "prescriber_id"
        ),
        F.col("reimb").alias("reimbursement"),
        F.col("rcode").alias("reimbursement_code"),
        F.col("packs").alias("packs_n"),
        # A shifted person number no real person has: the pseudonym of an unknown person.
        (idx + F.lit(persons)).alias("unknown_idx"),
        u("defect").alias("u_defect"),
        u("defect_kind").alias("u_kind"),
        u("defect_variant").alias("u_variant"),
    )
    if defect_rate > 0:
        kind = item(
            F.array(*[F.lit(n) for n in DEFECT_NAMES]),
            pick(F.col("u_kind"), [w for _, w in cat.DEFECT_KINDS]) + 1,
        )
        # A missing DDD cannot be injected where there is none (LDN): make it whitespace.
        # ... and a return of a return would be a double minus: make it a duplicate.
        kind = (
            F.when((kind == "missing_ddd") & F.col("ddd_per_pack").isNull(), F.lit("whitespace"))
            .when((kind == "return") & (F.col("packs_n") < 0), F.lit("duplicate"))
            .otherwise(kind)
        )
        df = df.withColumn("defect", F.when(F.col("u_defect") < defect_rate, kind))
    else:
        df = df.withColumn("defect", F.lit(None).cast("string"))
    df = _apply_defects(df, seed=seed)
    fields = [F.col(c) for c in DISPENSINGS_COLUMNS]
    return df.select(
        "year",
        "day",
        "dispensing_id",
        join_fields(fields).alias("line"),
        "defect",
        "copy",
        "packs_n",
    )


def _apply_defects(df: DataFrame, *, seed: int) -> DataFrame:
    d = F.col("defect")
    v3 = F.floor(F.col("u_variant") * 3)
    v4 = F.floor(F.col("u_variant") * 4)
    year_s = F.col("year").cast("string")
    bad_date = (
        F.when(v3 == 0, F.concat(year_s, F.lit("-02-30")))
        .when(v3 == 1, F.concat(year_s, F.lit("-13-"), F.substring(F.col("dispense_date"), 9, 2)))
        .otherwise(
            F.concat(
                (F.col("year") + 100).cast("string"), F.substring(F.col("dispense_date"), 5, 6)
            )
        )
    )
    bad_atc = (
        F.when(v3 == 0, F.substring(F.col("atc_code"), 1, 5))
        .when(v3 == 1, F.concat(F.col("atc_code"), F.lit("0")))
        .otherwise(
            F.concat(
                F.substring(F.col("atc_code"), 1, 3),
                F.lit("-"),
                F.substring(F.col("atc_code"), 4, 4),
            )
        )
    )
    ws = d == "whitespace"
    df = df.withColumns(
        {
            "dispense_date": F.when(d == "impossible_date", bad_date).otherwise(
                F.col("dispense_date")
            ),
            "atc_code": F.when(d == "malformed_atc", bad_atc)
            .when(ws & (v4 == 1), F.concat(F.lit(" "), F.col("atc_code")))
            .otherwise(F.col("atc_code")),
            "person_id": F.when(d == "unknown_person", person_id(F.col("unknown_idx"), seed))
            .when(ws & (v4 == 0), F.concat(F.col("person_id"), F.lit(" ")))
            .otherwise(F.col("person_id")),
            "product_name": F.when(
                ws & (v4 == 2), F.concat(F.col("product_name"), F.lit("  "))
            ).otherwise(F.col("product_name")),
            "packs": F.when(d == "return", F.concat(F.lit("-"), F.col("packs")))
            .when(ws & (v4 == 3), F.concat(F.lit(" "), F.col("packs")))
            .otherwise(F.col("packs")),
            "packs_n": F.when(d == "return", -F.col("packs_n")).otherwise(F.col("packs_n")),
            "ddd_per_pack": F.when(d == "missing_ddd", F.lit(None).cast("string")).otherwise(
                F.col("ddd_per_pack")
            ),
        }
    )
    copies = F.when(d == "duplicate", F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))
    return df.withColumn("copy", F.explode(copies))
