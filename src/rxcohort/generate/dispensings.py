"""Dispensing events: background drug use, the LDN wave and its injected effects.

Each source turns person rows into event rows with the same columns (``EVENT_COLUMNS``):
``idx`` (person number), ``src`` (regimen code), ``k`` (the event's number within the person
and regimen), ``day``, ``prod`` (product index), ``packs``, ``presc`` (prescriber index),
``reimb`` and ``rcode``. ``(idx, src, k)`` is unique and seeds every random choice about the
event. Nothing here loops over persons in Python: rows multiply with ``explode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from rxcohort.generate import catalogue as cat
from rxcohort.generate.population import PopulationPlan, PrescriberPlan, day_number
from rxcohort.generate.rand import (
    cumulative,
    item,
    local_table,
    pick_from_array,
    uniform,
    with_uniforms,
)

EVENT_COLUMNS = ("idx", "src", "k", "day", "prod", "packs", "presc", "reimb", "rcode")
# Person columns carried along for the injected effects and the return rows.
PERSON_CARRY = ("ldn_start", "ldn_class", "ldn_ramp_days", "obs_end")

# --------------------------------------------------------------------------------------------
# Small broadcast tables
# --------------------------------------------------------------------------------------------


def format_number(x: float | None) -> str | None:
    """Decimal as the registry writes it: '.' mark, no exponent, at most 4 decimals."""
    if x is None:
        return None
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4f}".rstrip("0").rstrip(".")


def effect_reductions(atc: str, effects: Mapping[str, Mapping[str, float]]) -> list[float]:
    """Reduction (0..1) for each exposure group of a product's ATC code; longest prefix wins."""
    for prefix in sorted(effects, key=len, reverse=True):
        if atc.startswith(prefix):
            return [-float(effects[prefix].get(g, 0.0)) for g in cat.EXPOSURE_GROUPS]
    return [0.0, 0.0, 0.0]


PRODUCT_SCHEMA = StructType(
    [
        StructField("prod", IntegerType(), False),
        StructField("atc", StringType(), False),
        StructField("atc_new", StringType(), True),
        StructField("atc_new_day", IntegerType(), True),
        StructField("product_id", StringType(), False),
        StructField("product_name", StringType(), False),
        StructField("magistral", StringType(), False),
        StructField("strength_s", StringType(), True),
        StructField("units_s", StringType(), False),
        StructField("ddd_s", StringType(), True),
        StructField("reductions", ArrayType(DoubleType()), False),
    ]
)


def product_table(spark: SparkSession, effects: Mapping[str, Mapping[str, float]]) -> DataFrame:
    rows = []
    for i, p in enumerate(cat.ALL_PRODUCTS):
        rows.append(
            (
                i,
                p.atc,
                p.atc_change[1] if p.atc_change else None,
                day_number(p.atc_change[0]) if p.atc_change else None,
                p.product_id,
                p.name,
                "1" if p.magistral else "0",
                format_number(p.strength_mg),
                format_number(p.units),
                format_number(cat.ddd_per_pack(p)),
                effect_reductions(p.atc, effects),
            )
        )
    return local_table(spark, PRODUCT_SCHEMA, rows)


REGIMEN_SCHEMA = StructType(
    [
        StructField("code", IntegerType(), False),
        StructField("lvl", ArrayType(DoubleType()), False),
        StructField("female", DoubleType(), False),
        StructField("male", DoubleType(), False),
        StructField("ldn", DoubleType(), False),
        StructField("condition", StringType(), True),
        StructField("years", DoubleType(), False),
        StructField("blue", DoubleType(), False),
        StructField("icpc", StringType(), True),
        StructField("icd", StringType(), True),
        StructField("hospital", DoubleType(), False),
        StructField("prods", ArrayType(IntegerType()), False),
        StructField("prod_cum", ArrayType(DoubleType()), False),
        StructField("p_units", ArrayType(DoubleType()), False),
        StructField("p_lo", ArrayType(DoubleType()), False),
        StructField("p_hi", ArrayType(DoubleType()), False),
        StructField("pool_off", ArrayType(LongType()), False),
        StructField("pool_cnt", ArrayType(LongType()), False),
        StructField("pool_cum", ArrayType(DoubleType()), False),
        StructField("pool_gp", ArrayType(BooleanType()), False),
    ]
)


def regimen_table(spark: SparkSession, *, kind: str, prescribers: PrescriberPlan) -> DataFrame:
    rows = []
    for r in cat.REGIMENS:
        if r.kind != kind:
            continue
        products = [cat.ALL_PRODUCTS[cat.PRODUCT_INDEX[key]] for key, _ in r.products]
        pools = [prescribers.pool(name) for name, _ in r.prescribers]
        rows.append(
            (
                r.code,
                [float(x) for x in r.level],
                float(r.female),
                float(r.male),
                float(r.ldn),
                r.condition,
                float(r.years),
                float(r.blue),
                r.codes[0] or None,
                r.codes[1] or None,
                float(r.hospital),
                [cat.PRODUCT_INDEX[key] for key, _ in r.products],
                cumulative([w for _, w in r.products]),
                [float(p.units) for p in products],
                [float(p.daily_units[0]) for p in products],
                [float(p.daily_units[1]) for p in products],
                [p.offset for p in pools],
                [p.count for p in pools],
                cumulative([w for _, w in r.prescribers]),
                [p.name == "gp" for p in pools],
            )
        )
    return local_table(spark, REGIMEN_SCHEMA, rows)


# --------------------------------------------------------------------------------------------
# Helpers on columns
# --------------------------------------------------------------------------------------------


def _level(persons_sex: Column, band: str = "band") -> Column:
    """A regimen's level for a person: by age band, sex, LDN use and condition."""
    base = item(F.col("lvl"), F.col(band) + 1)
    sex = F.when(persons_sex == 2, F.col("female")).otherwise(F.col("male"))
    ldn = F.when(F.col("ldn_start").isNotNull(), F.col("ldn")).otherwise(F.lit(1.0))
    cond = (
        F.when(F.col("condition").isNull(), F.lit(True))
        .when(F.col("condition") == "ra", F.col("has_ra"))
        .when(F.col("condition") == "ms", F.col("has_ms"))
        .when(F.col("condition") == "ibd", F.col("has_ibd"))
        .when(F.col("condition") == "fm", F.col("has_fm"))
        .otherwise(F.lit(False))
    )
    return F.when(cond, base * sex * ldn).otherwise(F.lit(0.0))


def _pool_prescriber(u_pool: Column, u_member: Column, u_own: Column) -> tuple[Column, Column]:
    """(prescriber index, is-GP flag) drawn from a regimen's weighted prescriber pools."""
    i = pick_from_array(u_pool, F.col("pool_cum")) + 1
    is_gp = item(F.col("pool_gp"), i)
    member = item(F.col("pool_off"), i) + F.floor(u_member * item(F.col("pool_cnt"), i)).cast(
        "long"
    )
    # Most of what a GP prescribes comes from the person's own regular GP.
    presc = F.when(is_gp & (u_own < 0.9), F.col("gp_idx")).otherwise(member)
    return presc, is_gp


def _reimbursement(u_h: Column, u_blue: Column, from_gp: Column) -> tuple[Column, Column]:
    reimb = (
        F.when(u_h < F.col("hospital"), F.lit("h"))
        .when(u_blue < F.col("blue"), F.lit("blue"))
        .otherwise(F.lit("white"))
    )
    code = F.when(from_gp, F.col("icpc")).otherwise(F.coalesce(F.col("icd"), F.col("icpc")))
    return reimb, F.when(reimb != "white", code)


def _null_prescriber(presc: Column, u: Column) -> Column:
    return F.when(u >= cat.NULL_PRESCRIBER_RATE, presc)


def _events(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("idx").cast("long"),
        F.col("src").cast("int"),
        F.col("k").cast("int"),
        F.col("day").cast("int"),
        F.col("prod").cast("int"),
        F.col("packs").cast("int"),
        F.col("presc").cast("long"),
        F.col("reimb").cast("string"),
        F.col("rcode").cast("string"),
        *[F.col(c) for c in PERSON_CARRY],
    )


# --------------------------------------------------------------------------------------------
# Background use
# --------------------------------------------------------------------------------------------


_CROSS_COLUMNS = (
    "idx",
    "sex",
    "band",
    "band_start",
    "band_end",
    "frailty",
    "exit_hazard",
    "gp_idx",
    "obs_start",
    "obs_end",
    "period_start",
    "has_ra",
    "has_ms",
    "has_ibd",
    "has_fm",
    "ldn_start",
    "ldn_class",
    "ldn_ramp_days",
)


def generate_chronic(persons: DataFrame, regimens: DataFrame, *, seed: int) -> DataFrame:
    """Refills over treatment episodes: one episode per person and chronic regimen at most."""
    df = _chronic_episodes(persons, regimens, seed=seed)
    df = _chronic_products(df)
    df = _chronic_span(df)
    return _events(_chronic_refills(df, seed=seed))


_CHRONIC_DRAWS = (
    "product",
    "per_day",
    "packs",
    "adh",
    "phase",
    "incident",
    "pool",
    "member",
    "own",
    "hospital",
    "blue",
    "episode",
)


def _chronic_episodes(persons: DataFrame, regimens: DataFrame, *, seed: int) -> DataFrame:
    """The (person, regimen) pairs with an episode, and the draws that shape it.

    Steady state: a person is on treatment when the period opens with the point prevalence of
    their age then; new episodes start at prevalence / duration per year, each lasting
    Exp(duration), at the prevalence of the age they reach, plus the rate at which users die
    or emigrate: that is how users who leave are replaced by others, and use stays level over
    calendar time."""
    obs_days = F.col("obs_end") - F.col("obs_start") + 1
    level_start = F.least(F.lit(1.0), _level(F.col("sex"), "band_start"))
    level_end = F.least(F.lit(1.0), _level(F.col("sex"), "band_end"))
    p_prevalent = F.when(F.col("obs_start") == F.col("period_start"), level_start).otherwise(0.0)
    p_incident = (
        level_end * obs_days / 365.25 * (F.lit(1.0) / F.col("years") + F.col("exit_hazard"))
    )
    df = persons.select(*_CROSS_COLUMNS).crossJoin(F.broadcast(regimens))
    df = df.withColumns(
        {
            "u_chronic": uniform(seed, "chronic", F.col("idx"), F.col("code")),
            "p_prevalent": p_prevalent,
            "p_incident": p_incident,
        }
    )
    df = df.where(F.col("u_chronic") < F.col("p_prevalent") + F.col("p_incident"))
    return with_uniforms(df, seed, ["idx", "code"], _CHRONIC_DRAWS)


def _chronic_products(df: DataFrame) -> DataFrame:
    """The episode's product, packs per fill, days between fills, prescriber, reimbursement."""
    u = _draw
    df = df.withColumn("choice", pick_from_array(u("product"), F.col("prod_cum")) + 1)
    choice = F.col("choice")
    lo, hi = item(F.col("p_lo"), choice), item(F.col("p_hi"), choice)
    per_day = lo + (hi - lo) * u("per_day")
    packs = F.when(u("packs") < 0.08, F.lit(2)).otherwise(F.lit(1))
    gap = F.greatest(
        F.lit(7.0),
        item(F.col("p_units"), choice) * packs / per_day * (F.lit(1.0) + 0.3 * u("adh")),
    )
    presc, from_gp = _pool_prescriber(u("pool"), u("member"), u("own"))
    df = df.withColumns(
        {
            "prod": item(F.col("prods"), choice),
            "packs": packs,
            "gap": gap,
            "main_presc": presc,
            "from_gp": from_gp,
        }
    )
    reimb, rcode = _reimbursement(u("hospital"), u("blue"), F.col("from_gp"))
    return df.withColumns({"reimb": reimb, "rcode": rcode})


def _chronic_span(df: DataFrame) -> DataFrame:
    """first..last: a prevalent episode's first fill falls within one gap of the period's
    start, an incident one anywhere in the person's observation; each lasts Exp(years)."""
    u = _draw
    obs_days = F.col("obs_end") - F.col("obs_start") + 1
    prevalent = F.col("u_chronic") < F.col("p_prevalent")
    first = F.when(prevalent, F.col("obs_start") + F.floor(u("phase") * F.col("gap"))).otherwise(
        F.col("obs_start") + F.floor(u("incident") * obs_days)
    )
    df = df.withColumn("first", first.cast("int"))
    episode_end = F.col("first") + F.floor(-F.log(u("episode")) * F.col("years") * 365.25)
    return df.withColumn("last", F.least(episode_end.cast("int"), F.col("obs_end")))


def _chronic_refills(df: DataFrame, *, seed: int) -> DataFrame:
    """One row per fill, every gap days (jittered) from first to last; now and then a locum
    or a colleague writes the repeat prescription."""
    u = _draw
    n = F.floor((F.col("last") - F.col("first")) / F.col("gap")).cast("int") + 1
    df = df.where(F.col("last") >= F.col("first")).withColumn(
        "k", F.explode(F.sequence(F.lit(0), n - 1))
    )
    df = with_uniforms(
        df, seed, ["idx", "code", "k"], ("jitter", "locum", "locum_member", "no_presc")
    )
    k = F.col("k")
    jitter = F.when(k > 0, (u("jitter") - 0.5) * 0.2 * F.col("gap")).otherwise(F.lit(0.0))
    day = F.col("first") + F.round(k * F.col("gap") + jitter)
    locum = F.col("pool_off")[0] + F.floor(u("locum_member") * F.col("pool_cnt")[0])
    presc = F.when(u("locum") < 0.08, locum.cast("long")).otherwise(F.col("main_presc"))
    df = df.withColumns(
        {
            "day": day.cast("int"),
            "src": F.col("code"),
            "presc": _null_prescriber(presc, u("no_presc")),
        }
    )
    return df.where((F.col("day") <= F.col("last")) & (F.col("day") >= F.col("obs_start")))


def _draw(purpose: str) -> Column:
    """The row's uniform draw for ``purpose`` (``with_uniforms``)."""
    return F.col("u_" + purpose)


def generate_occasional(persons: DataFrame, regimens: DataFrame, *, seed: int) -> DataFrame:
    """Sporadic dispensings: a Poisson number per person and regimen at random days.

    The count is Binomial(K, lambda/K) over K slots, K well above lambda, a close Poisson.
    """
    idx, code = F.col("idx"), F.col("code")
    obs_days = F.col("obs_end") - F.col("obs_start") + 1
    lam = _level(F.col("sex")) * F.col("frailty") * obs_days / 365.25
    df = persons.select(*_CROSS_COLUMNS).crossJoin(F.broadcast(regimens)).withColumn("lam", lam)
    df = df.where(F.col("lam") > 1e-9)
    df = df.withColumn("slots", F.ceil(F.col("lam") + 3 * F.sqrt(F.col("lam")) + 2).cast("int"))
    df = df.withColumn("k", F.explode(F.sequence(F.lit(1), F.col("slots"))))
    k = F.col("k")
    df = df.where(uniform(seed, "occurs", idx, code, k) * F.col("slots") < F.col("lam"))
    df = with_uniforms(
        df,
        seed,
        ["idx", "code", "k"],
        ("product", "pool", "member", "own", "hospital", "blue", "day", "packs", "no_presc"),
    )

    def u(purpose: str) -> Column:
        return F.col("u_" + purpose)

    choice = pick_from_array(u("product"), F.col("prod_cum")) + 1
    presc, from_gp = _pool_prescriber(u("pool"), u("member"), u("own"))
    df = df.withColumns({"_presc": presc, "_from_gp": from_gp})
    reimb, rcode = _reimbursement(u("hospital"), u("blue"), F.col("_from_gp"))
    df = df.withColumns(
        {
            "src": code,
            "day": (F.col("obs_start") + F.floor(u("day") * obs_days)).cast("int"),
            "prod": item(F.col("prods"), choice),
            "packs": F.when(u("packs") < 0.1, F.lit(2)).otherwise(F.lit(1)),
            "presc": _null_prescriber(F.col("_presc"), u("no_presc")),
            "reimb": reimb,
            "rcode": rcode,
        }
    )
    return _events(df)


# --------------------------------------------------------------------------------------------
# LDN, naltrexone, and the LDN users' own opioid use
# --------------------------------------------------------------------------------------------


def _ldn_product(strength_pos: Column, units_pos: Column) -> Column:
    return F.lit(len(cat.PRODUCTS)) + strength_pos * len(cat.LDN_PACK_UNITS) + units_pos


def _ldn_prescriber(u_other: Column, u_member: Column, prescribers: PrescriberPlan) -> Column:
    gp = prescribers.pool("gp")
    size = prescribers.ldn_willing_gps + prescribers.ldn_willing_others
    j = F.floor(u_member * size).cast("long")
    other = F.when(j < prescribers.ldn_willing_gps, F.lit(gp.offset) + j).otherwise(
        F.lit(gp.offset + gp.count) + (j - prescribers.ldn_willing_gps)
    )
    return F.when(u_other < 0.15, other).otherwise(F.col("ldn_doctor"))


def generate_ldn(persons: DataFrame, *, seed: int, prescribers: PrescriberPlan) -> DataFrame:
    """LDN fills of the 2013-2014 users.

    The exposure group is built in: fills planned within a year of the first stay inside
    [start, start + 364], the others after it, so the count in the exposure window is exact.
    """
    idx = F.col("idx")
    src = F.lit(cat.LDN_REGIMEN_CODE)
    df = persons.where(F.col("ldn_start").isNotNull())
    n_fills = F.when(F.col("ldn_class") < 3, F.col("ldn_first_year_fills")).otherwise(
        F.floor(F.col("ldn_persist_days") / F.col("ldn_gap")).cast("int") + 1
    )
    df = df.withColumn("k", F.explode(F.sequence(F.lit(0), n_fills - 1)))
    k = F.col("k")
    jitter = F.when(k > 0, F.floor(uniform(seed, "ldn_jitter", idx, k) * 9) - 4).otherwise(0)
    planned = k * F.col("ldn_gap")
    raw = F.col("ldn_start") + planned + jitter
    day = F.when(planned <= 364, F.least(raw, F.col("ldn_start") + 364)).otherwise(
        F.greatest(raw, F.col("ldn_start") + 365)
    )
    code = F.element_at(
        F.create_map(
            *[x for name, c in cat.LDN_BLUE_CODES.items() for x in (F.lit(name), F.lit(c[0]))]
        ),
        F.col("ldn_indication"),
    )
    df = df.withColumns(
        {
            "src": src,
            "day": day.cast("int"),
            "prod": _ldn_product(F.col("ldn_strength_pos"), F.col("ldn_units_pos")),
            "packs": F.lit(1),
            "presc": _null_prescriber(
                _ldn_prescriber(
                    uniform(seed, "ldn_other_doc", idx, k),
                    uniform(seed, "ldn_other_member", idx, k),
                    prescribers,
                ),
                uniform(seed, "ldn_no_presc", idx, k),
            ),
            "reimb": F.col("ldn_reimbursement"),
            "rcode": F.when(F.col("ldn_reimbursement") != "white", code),
        }
    )
    df = df.where(F.col("day") <= F.col("obs_end"))
    return _events(df)


def generate_ldn_early(persons: DataFrame, *, seed: int, prescribers: PrescriberPlan) -> DataFrame:
    """The handful of LDN users before the wave: monthly-ish fills from 2011-2012 onwards."""
    idx = F.col("idx")

    def u(purpose: str, *more: Column) -> Column:
        return uniform(seed, purpose, idx, *more)

    first = day_number(date(2011, 1, 1)) + F.floor(u("early_start") * 730)
    until = first + F.lit(120) + F.floor(u("early_length") * 1400)
    df = persons.where(F.col("ldn_early_user")).withColumns(
        {"first": first.cast("int"), "until": until.cast("int")}
    )
    n = F.floor((F.col("until") - F.col("first")) / F.col("ldn_gap")).cast("int") + 1
    df = df.withColumn("k", F.explode(F.sequence(F.lit(0), n - 1)))
    k = F.col("k")
    df = df.withColumns(
        {
            "src": F.lit(cat.LDN_EARLY_CODE),
            "day": (F.col("first") + k * F.col("ldn_gap") + F.floor(u("early_jitter", k) * 7)).cast(
                "int"
            ),
            "prod": _ldn_product(F.col("ldn_strength_pos"), F.col("ldn_units_pos")),
            "packs": F.lit(1),
            "presc": _ldn_prescriber(u("early_other", k), u("early_member", k), prescribers),
            "reimb": F.lit("white"),
            "rcode": F.lit(None).cast("string"),
        }
    )
    df = df.where((F.col("day") >= F.col("obs_start")) & (F.col("day") <= F.col("obs_end")))
    return _events(df)


def generate_naltrexone(
    persons: DataFrame, *, seed: int, plan: PopulationPlan, prescribers: PrescriberPlan
) -> DataFrame:
    """Naltrexone 50 mg for alcohol or opioid dependence: same ATC as LDN, never LDN."""
    idx = F.col("idx")

    def u(purpose: str, *more: Column) -> Column:
        return uniform(seed, purpose, idx, *more)

    span = max(1, plan.end_day - plan.start_day - 60)
    psych = prescribers.pool("psychiatry")
    df = persons.where(F.col("naltrexone_user")).withColumns(
        {
            "first": (F.lit(plan.start_day) + F.floor(u("ntx_start") * span)).cast("int"),
            "n": (F.lit(2) + F.floor(u("ntx_fills") * 11)).cast("int"),
            "main_presc": F.when(
                u("ntx_doctor") < 0.5,
                F.lit(psych.offset) + F.floor(u("ntx_member") * psych.count).cast("long"),
            ).otherwise(F.col("gp_idx")),
            "reimb": F.when(u("ntx_blue") < 0.3, F.lit("blue")).otherwise(F.lit("white")),
        }
    )
    df = df.withColumn("k", F.explode(F.sequence(F.lit(0), F.col("n") - 1)))
    k = F.col("k")
    df = df.withColumns(
        {
            "src": F.lit(cat.NALTREXONE_CODE),
            "day": (F.col("first") + k * 30 + F.floor(u("ntx_jitter", k) * 7)).cast("int"),
            "prod": F.lit(cat.PRODUCT_INDEX["naltrexone_50_28"]),
            "packs": F.lit(1),
            "presc": F.col("main_presc"),
            "rcode": F.when(F.col("reimb") == "blue", F.lit("P15")),
        }
    )
    df = df.where((F.col("day") >= F.col("obs_start")) & (F.col("day") <= F.col("obs_end")))
    return _events(df)


def _product_arrays(products: tuple[tuple[str, float], ...]) -> dict[str, Column]:
    items = [cat.ALL_PRODUCTS[cat.PRODUCT_INDEX[key]] for key, _ in products]
    return {
        "prods": F.array(*[F.lit(cat.PRODUCT_INDEX[key]) for key, _ in products]),
        "cum": F.array(*[F.lit(c) for c in cumulative([w for _, w in products])]),
        "units": F.array(*[F.lit(float(p.units)) for p in items]),
        "lo": F.array(*[F.lit(float(p.daily_units[0])) for p in items]),
        "hi": F.array(*[F.lit(float(p.daily_units[1])) for p in items]),
    }


def generate_ldn_opioids(persons: DataFrame, *, seed: int) -> DataFrame:
    """The LDN users' own opioid use, steady over the whole period (before any effect).

    Regular users refill one product for the whole observation; others have flares of
    short courses. Both are stationary, so before-after differences come from the effect only.
    """
    idx = F.col("idx")
    base = persons.where(F.col("ldn_opioid_type") > 0)

    def u(purpose: str, *more: Column) -> Column:
        return uniform(seed, purpose, idx, *more)

    own_gp = F.when(u("ldn_op_gp") < 0.9, F.col("gp_idx")).otherwise(F.col("ldn_doctor"))
    blue = u("ldn_op_blue") < 0.5

    # Regular users.
    arr = _product_arrays(cat.LDN_OPIOID_REGULAR_PRODUCTS)
    choice = pick_from_array(u("ldn_op_product"), arr["cum"]) + 1
    per_day = (
        item(arr["lo"], choice)
        + (item(arr["hi"], choice) - item(arr["lo"], choice))
        * u("ldn_op_per_day")
        * cat.LDN_OPIOID_DOSE_FACTOR
    )
    gap = item(arr["units"], choice) / per_day * (F.lit(1.0) + 0.25 * u("ldn_op_adh"))
    reg = base.where(F.col("ldn_opioid_type") == 1).withColumns(
        {"prod": item(arr["prods"], choice), "gap": F.greatest(F.lit(7.0), gap)}
    )
    reg = reg.withColumn(
        "first", (F.col("obs_start") + F.floor(u("ldn_op_phase") * F.col("gap"))).cast("int")
    )
    n = F.floor((F.col("obs_end") - F.col("first")) / F.col("gap")).cast("int") + 1
    reg = reg.where(F.col("obs_end") >= F.col("first")).withColumn(
        "k", F.explode(F.sequence(F.lit(0), n - 1))
    )
    k = F.col("k")
    jitter = F.when(k > 0, (u("ldn_op_jitter", k) - 0.5) * 0.2 * F.col("gap")).otherwise(0.0)
    reg = reg.withColumns(
        {
            "src": F.lit(cat.LDN_OPIOID_CODE),
            "day": (F.col("first") + F.round(k * F.col("gap") + jitter)).cast("int"),
            "packs": F.lit(1),
            "presc": _null_prescriber(own_gp, u("ldn_op_no_presc", k)),
            "reimb": F.when(blue, F.lit("blue")).otherwise(F.lit("white")),
            "rcode": F.when(blue, F.lit("L18")),
        }
    )
    reg = reg.where(F.col("day") <= F.col("obs_end"))

    # Flares.
    arr = _product_arrays(cat.LDN_OPIOID_FLARE_PRODUCTS)
    obs_days = F.col("obs_end") - F.col("obs_start") + 1
    lam = F.lit(cat.LDN_OPIOID_FLARES_PER_YEAR) * obs_days / 365.25
    fl = base.where(F.col("ldn_opioid_type") == 2).withColumn("lam", lam)
    slots = F.ceil(F.col("lam") + 3 * F.sqrt(F.col("lam")) + 2).cast("int")
    fl = fl.withColumn("slots", slots).withColumn("k", F.explode(F.sequence(F.lit(1), slots)))
    k = F.col("k")
    fl = fl.where(u("ldn_fl_occurs", k) * F.col("slots") < F.col("lam"))
    choice = pick_from_array(u("ldn_fl_product", k), arr["cum"]) + 1
    fl = fl.withColumns(
        {
            "src": F.lit(cat.LDN_OPIOID_FLARE_CODE),
            "day": (F.col("obs_start") + F.floor(u("ldn_fl_day", k) * obs_days)).cast("int"),
            "prod": item(arr["prods"], choice),
            "packs": F.lit(1),
            "presc": _null_prescriber(own_gp, u("ldn_fl_no_presc", k)),
            "reimb": F.lit("white"),
            "rcode": F.lit(None).cast("string"),
        }
    )
    return _events(reg).unionByName(_events(fl))


# --------------------------------------------------------------------------------------------
# Assembly: products, ATC history, injected effects, returns
# --------------------------------------------------------------------------------------------


def generate_events(
    spark: SparkSession,
    persons: DataFrame,
    *,
    plan: PopulationPlan,
    prescribers: PrescriberPlan,
    effects: Mapping[str, Mapping[str, float]],
) -> DataFrame:
    """All clean dispensing events with product attributes, effects applied, returns added."""
    seed = plan.seed
    observed = persons.where(F.col("obs_end") >= F.col("obs_start")).withColumn(
        "period_start", F.lit(plan.start_day)
    )
    parts = [
        generate_chronic(
            observed, regimen_table(spark, kind="chronic", prescribers=prescribers), seed=seed
        ),
        generate_occasional(
            observed, regimen_table(spark, kind="occasional", prescribers=prescribers), seed=seed
        ),
        generate_ldn(observed, seed=seed, prescribers=prescribers),
        generate_ldn_early(observed, seed=seed, prescribers=prescribers),
        generate_naltrexone(observed, seed=seed, plan=plan, prescribers=prescribers),
        generate_ldn_opioids(observed, seed=seed),
    ]
    events = parts[0]
    for part in parts[1:]:
        events = events.unionByName(part)
    events = events.where((F.col("day") >= plan.start_day) & (F.col("day") <= plan.end_day))
    events = events.join(F.broadcast(product_table(spark, effects)), on="prod", how="inner")
    events = apply_effects(events, seed=seed)
    return add_returns(events, seed=seed, end_day=plan.end_day)


def apply_effects(events: DataFrame, *, seed: int) -> DataFrame:
    """Thin LDN users' dispensings after their first LDN dispensing by the injected effect.

    The reduction ramps up linearly over the person's ramp days and is scaled so that its
    average over the first 365 days equals the configured relative change.
    """
    t = F.col("day") - F.col("ldn_start")
    ramp = F.col("ldn_ramp_days")
    full = item(F.col("reductions"), F.col("ldn_class")) / (F.lit(1.0) - ramp / 730.0)
    reduction = F.when(
        F.col("ldn_start").isNotNull() & (t >= 0),
        # A zero ramp is a full effect at once; the division is guarded rather than left to the
        # branch, because engines may evaluate both branches of a CASE.
        F.least(F.lit(1.0), full) * F.least(F.lit(1.0), t / F.when(ramp > 0, ramp)),
    ).otherwise(F.lit(0.0))
    keep = uniform(seed, "effect", F.col("idx"), F.col("src"), F.col("k")) >= reduction
    return events.where(keep)


def add_returns(events: DataFrame, *, seed: int, end_day: int) -> DataFrame:
    """Genuine returns: now and then a dispensing comes back to the pharmacy within two weeks."""
    idx, src, k = F.col("idx"), F.col("src"), F.col("k")
    is_ret = uniform(seed, "return", idx, src, k) < cat.GENUINE_RETURN_RATE
    copies = F.when(is_ret, F.array(F.lit(False), F.lit(True))).otherwise(F.array(F.lit(False)))
    df = events.withColumn("is_return", F.explode(copies))
    back = F.col("day") + 1 + F.floor(uniform(seed, "return_day", idx, src, k) * 14)
    df = df.withColumns(
        {
            "day": F.when(F.col("is_return"), back.cast("int")).otherwise(F.col("day")),
            "src": F.when(F.col("is_return"), src + cat.RETURN_CODE_OFFSET).otherwise(src),
            "packs": F.when(F.col("is_return"), -F.col("packs")).otherwise(F.col("packs")),
        }
    )
    return df.where(F.col("day") <= F.least(F.lit(end_day), F.col("obs_end")))
