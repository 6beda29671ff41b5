"""The synthetic population and its prescribers, as Spark DataFrames built from ``spark.range``.

One row per person carries everything later steps need: the delivered columns and hidden ones
(day numbers, age band, frailty, regular GP, conditions, and the LDN story of the person).
Days are integers counted from 1970-01-01 so that date arithmetic is plain integer arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from rxcohort.generate import catalogue as cat
from rxcohort.generate.rand import item, pick, with_uniforms

EPOCH = date(1970, 1, 1)
MAX_PERSONS = 100_000_000  # dispensing ids and pseudonyms are bijections on fixed ranges

# Bijections that turn row numbers into pseudonyms: x -> (a*x + b) mod m, a coprime to m.
_PERSON_MOD, _PERSON_MUL = 10**9, 387_420_489  # 3**18
_PRESCRIBER_MOD, _PRESCRIBER_MUL = 10**7, 1_594_323  # 3**13
_SLOT_PRIMES = (1_000_003, 999_983, 1_000_033, 999_979)


def day_number(d: date) -> int:
    return (d - EPOCH).days


def as_date(day: Column) -> Column:
    return F.date_from_unix_date(day.cast("int"))


def _offset(seed: int, purpose: str, modulus: int) -> int:
    # A seed-dependent additive constant for a bijection; plain arithmetic, no Spark.
    x = (seed * 0x9E3779B97F4A7C15 + sum(ord(c) * 131**i for i, c in enumerate(purpose))) % 2**61
    return x % modulus


def person_id(idx: Column, seed: int) -> Column:
    """Registry pseudonym of person number ``idx`` (also for idx >= N: unknown persons)."""
    b = _offset(seed, "person", _PERSON_MOD)
    num = F.pmod(idx.cast("long") * F.lit(_PERSON_MUL) + F.lit(b), F.lit(_PERSON_MOD))
    return F.concat(F.lit("P"), F.lpad(num.cast("string"), 9, "0"))


def prescriber_id(pidx: Column, seed: int) -> Column:
    b = _offset(seed, "prescriber", _PRESCRIBER_MOD)
    num = F.pmod(pidx.cast("long") * F.lit(_PRESCRIBER_MUL) + F.lit(b), F.lit(_PRESCRIBER_MOD))
    return F.concat(F.lit("R"), F.lpad(num.cast("string"), 7, "0"))


# --------------------------------------------------------------------------------------------
# Prescriber pools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    name: str
    profession: str
    specialty: str | None
    offset: int
    count: int


@dataclass(frozen=True)
class PrescriberPlan:
    """Sizes of the prescriber pools for a population of ``persons``, in index order."""

    pools: tuple[Pool, ...]
    ldn_willing_gps: int
    ldn_willing_others: int

    @property
    def total(self) -> int:
        return sum(p.count for p in self.pools)

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def physicians(self) -> int:
        return sum(p.count for p in self.pools if p.profession == "physician")


def plan_prescribers(persons: int) -> PrescriberPlan:
    n_phys = max(12, round(persons * cat.PHYSICIANS_PER_PERSON))
    counts = {name: max(1, round(n_phys * share)) for name, _, share in cat.PHYSICIAN_SPECIALTIES}
    # The no-specialty pool absorbs rounding so the physician total is exact.
    counts["no_specialty"] = max(
        1, n_phys - sum(v for k, v in counts.items() if k != "no_specialty")
    )
    pools, offset = [], 0
    for name, specialty, _ in cat.PHYSICIAN_SPECIALTIES:
        pools.append(Pool(name, "physician", specialty, offset, counts[name]))
        offset += counts[name]
    for name, profession, per_person in cat.OTHER_PROFESSIONS:
        n = max(1, round(persons * per_person))
        pools.append(Pool(name, profession, None, offset, n))
        offset += n
    n_gp = counts["gp"]
    n_phys_total = sum(p.count for p in pools if p.profession == "physician")
    willing_gps = max(1, round(n_gp * cat.LDN_WILLING_GP_SHARE))
    willing_others = max(0, round(n_phys_total * cat.LDN_WILLING_PHYSICIAN_SHARE) - willing_gps)
    willing_others = min(willing_others, n_phys_total - n_gp)
    return PrescriberPlan(tuple(pools), willing_gps, willing_others)


def generate_prescribers(spark: SparkSession, *, plan: PrescriberPlan, seed: int) -> DataFrame:
    """Every registered prescriber: prescriber_idx, prescriber_id, profession, specialty."""
    idx = F.col("id")
    profession: Column | None = None
    specialty: Column | None = None
    for p in plan.pools:
        inside = idx < p.offset + p.count
        spec = F.lit(p.specialty).cast("string")
        profession = (
            F.when(inside, p.profession)
            if profession is None
            else profession.when(inside, p.profession)
        )
        specialty = F.when(inside, spec) if specialty is None else specialty.when(inside, spec)
    assert profession is not None and specialty is not None
    return spark.range(plan.total).select(
        idx.alias("prescriber_idx"),
        prescriber_id(idx, seed).alias("prescriber_id"),
        profession.alias("profession"),
        specialty.alias("specialty"),
    )


# --------------------------------------------------------------------------------------------
# Persons
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PopulationPlan:
    persons: int
    seed: int
    start: date
    end: date
    ldn_rate: float
    n_naltrexone: int
    n_ldn_early: int
    slot_multiplier: int

    @property
    def start_day(self) -> int:
        return day_number(self.start)

    @property
    def end_day(self) -> int:
        return day_number(self.end)

    @property
    def years(self) -> float:
        return (self.end_day - self.start_day + 1) / 365.25

    @property
    def born_share(self) -> float:
        b = cat.BIRTHS_PER_PERSON_YEAR * self.years
        return b / (1 + b)


def plan_population(
    *, persons: int, seed: int, start: date, end: date, ldn_rate: float
) -> PopulationPlan:
    multiplier = next(p for p in _SLOT_PRIMES if persons % p != 0)
    n_ntx = max(cat.NALTREXONE_MIN, round(persons * cat.NALTREXONE_PER_PERSON))
    n_early = max(cat.LDN_EARLY_MIN, round(persons * cat.LDN_EARLY_PER_PERSON))
    return PopulationPlan(persons, seed, start, end, ldn_rate, n_ntx, n_early, multiplier)


def _ldn_weight(age: Column, female: Column) -> Column:
    bell = F.exp(F.lit(-0.5) * F.pow((age - F.lit(cat.LDN_AGE_CENTRE)) / cat.LDN_AGE_SD, 2))
    sex_w = F.when(female, F.lit(cat.LDN_FEMALE_WEIGHT)).otherwise(F.lit(1.0))
    return F.when(age >= cat.LDN_MIN_AGE, bell * sex_w).otherwise(F.lit(0.0))


def expected_ldn_weight(plan: PopulationPlan) -> float:
    """Mean LDN weight over the population, from the age table (no Spark pass needed).

    Selection probability is ``ldn_rate * weight / mean weight``, so the expected number of LDN
    candidates is ``ldn_rate * persons``.
    """
    shift = (day_number(date(2013, 7, 1)) - plan.start_day) / 365.25
    total_share = sum(s for s, _ in cat.AGE_GROUPS)
    mean = 0.0
    steps = 50
    for g, (share, female) in enumerate(cat.AGE_GROUPS):
        acc = 0.0
        for i in range(steps):
            age = 5 * g + 5 * (i + 0.5) / steps + shift
            if age < cat.LDN_MIN_AGE:
                continue
            bell = math.exp(-0.5 * ((age - cat.LDN_AGE_CENTRE) / cat.LDN_AGE_SD) ** 2)
            acc += bell * (female * cat.LDN_FEMALE_WEIGHT + (1 - female))
        mean += share / total_share * acc / steps
    return mean * (1 - plan.born_share)


def _month_table(plan: PopulationPlan) -> tuple[list[int], list[int]]:
    """First day and length (days) of each month of LDN starts in 2013-2014."""
    firsts, lengths = [], []
    for i in range(24):
        year, month = 2013 + i // 12, i % 12 + 1
        first = date(year, month, 1)
        nxt = date(year + (month == 12), month % 12 + 1, 1)
        if first < cat.LDN_WAVE_FIRST_DAY < nxt:
            first = cat.LDN_WAVE_FIRST_DAY
        firsts.append(day_number(first))
        lengths.append((nxt - first).days)
    return firsts, lengths


_PERSON_DRAWS = (
    "born",
    "age_group",
    "age_in",
    "sex",
    "birth_day",
    "death",
    "emigration",
    "county",
    "county_missing",
    "frailty1",
    "frailty2",
    "gp",
    "cond_ra",
    "cond_ms",
    "cond_ibd",
    "cond_fm",
    "ldn",
    "ldn_month",
    "ldn_day",
    "ldn_units",
    "ldn_strength",
    "ldn_adherence",
    "ldn_class",
    "ldn_two",
    "ldn_opioid",
    "ldn_indication",
    "ldn_reimbursement",
    "ldn_doctor",
    "ldn_own_gp",
    "ldn_persist",
    "ldn_ramp",
)


def generate_population(
    spark: SparkSession, *, plan: PopulationPlan, prescribers: PrescriberPlan
) -> DataFrame:
    """One row per person with delivered and hidden columns (see module docstring)."""
    df = _persons(spark, plan)
    df = _add_sex_and_birth(df, plan)
    df = _add_death_and_emigration(df, plan)
    df = _add_observation(df, plan)
    df = _add_places_and_frailty(df, prescribers)
    df = _add_ldn(df, plan=plan, prescribers=prescribers)
    df = _add_conditions(df)
    return df.drop(
        "t0",
        "age0",
        "age_group",
        "slot",
        "_death",
        "_emig",
        "_emig_rate",
        *["u_" + p for p in _PERSON_DRAWS],
    )


def _u(purpose: str) -> Column:
    """The person's uniform draw for ``purpose`` (``with_uniforms``)."""
    return F.col("u_" + purpose)


def _special() -> Column:
    """The naltrexone and early-LDN users, placed by slot: their ages and lives are set."""
    return F.col("naltrexone_user") | F.col("ldn_early_user")


def _sex_factor() -> Column:
    return F.when(F.col("sex") == 2, cat.MORTALITY_SEX[2]).otherwise(cat.MORTALITY_SEX[1])


def _band(age: Column) -> Column:
    out: Column = F.lit(0)
    for i, lower in enumerate(cat.BANDS[1:], start=1):
        out = F.when(age >= lower, F.lit(i)).otherwise(out)
    return out


def _persons(spark: SparkSession, plan: PopulationPlan) -> DataFrame:
    """idx, a permuted slot (the first slots are the special users), the draws, age group."""
    slot = F.pmod(
        F.col("idx") * F.lit(plan.slot_multiplier)
        + F.lit(_offset(plan.seed, "slot", plan.persons)),
        F.lit(plan.persons),
    )
    df = spark.range(plan.persons).select(F.col("id").alias("idx")).withColumn("slot", slot)
    df = with_uniforms(df, plan.seed, ["idx"], _PERSON_DRAWS)
    n_special = plan.n_naltrexone + plan.n_ldn_early
    special = F.col("slot") < n_special
    shares = [s for s, _ in cat.AGE_GROUPS]
    return df.withColumns(
        {
            "naltrexone_user": F.col("slot") < plan.n_naltrexone,
            "ldn_early_user": special & (F.col("slot") >= plan.n_naltrexone),
            "born_in_period": ~special & (_u("born") < plan.born_share),
            "age_group": pick(_u("age_group"), shares),
        }
    )


def _add_sex_and_birth(df: DataFrame, plan: PopulationPlan) -> DataFrame:
    """sex (by the age group's share of women), birth_day, t0 (the first day observed) and
    age0 (the age then)."""
    start_day, period_days = plan.start_day, plan.end_day - plan.start_day + 1
    female_by_group = F.array(*[F.lit(f) for _, f in cat.AGE_GROUPS])
    age_start = F.when(_special(), F.lit(25.0) + F.lit(40.0) * _u("age_in")).otherwise(
        F.col("age_group") * F.lit(5.0) + F.lit(5.0) * _u("age_in")
    )
    female = _u("sex") < item(female_by_group, F.col("age_group") + 1)
    birth_day = F.when(
        F.col("born_in_period"), F.lit(start_day) + F.floor(_u("birth_day") * period_days)
    ).otherwise(F.lit(start_day) - F.ceil(age_start * 365.25))
    df = df.withColumns(
        {"sex": F.when(female, F.lit(2)).otherwise(F.lit(1)), "birth_day": birth_day.cast("int")}
    )
    df = df.withColumn("t0", F.greatest(F.lit(start_day), F.col("birth_day")))
    return df.withColumn("age0", (F.col("t0") - F.col("birth_day")) / 365.25)


def _add_death_and_emigration(df: DataFrame, plan: PopulationPlan) -> DataFrame:
    """death_day and emigration_day within the period (the earlier of the two; none for the
    special users), from a Gompertz mortality and age-banded emigration rates."""
    age0, end_day = F.col("age0"), plan.end_day
    # Gompertz: with hazard h0*exp(b*t), the time to death is log(1 + b*E/h0)/b years.
    h0 = F.exp(F.lit(cat.MORTALITY_A) + F.lit(cat.MORTALITY_B) * age0) * _sex_factor()
    years_to_death = F.log1p(F.lit(cat.MORTALITY_B) * -F.log(_u("death")) / h0) / F.lit(
        cat.MORTALITY_B
    )
    death = (F.col("t0") + F.floor(years_to_death * 365.25)).cast("int")
    emig_rate: Column | None = None
    for from_age, rate in reversed(cat.EMIGRATION):
        emig_rate = (
            F.when(age0 >= from_age, F.lit(rate))
            if emig_rate is None
            else emig_rate.when(age0 >= from_age, F.lit(rate))
        )
    assert emig_rate is not None
    emig = (F.col("t0") + F.floor(-F.log(_u("emigration")) / emig_rate * 365.25)).cast("int")
    df = df.withColumns({"_death": death, "_emig": emig, "_emig_rate": emig_rate})
    special = _special()
    death_ok = ~special & (F.col("_death") <= end_day)
    return df.withColumns(
        {
            "death_day": F.when(death_ok, F.col("_death")),
            "emigration_day": F.when(
                ~special
                & (F.col("_emig") <= end_day)
                & (~death_ok | (F.col("_emig") < F.col("_death"))),
                F.col("_emig"),
            ),
        }
    )


def _add_observation(df: DataFrame, plan: PopulationPlan) -> DataFrame:
    """obs_start..obs_end (the days the person is in the population) and age_mid."""
    never = F.lit(2**31 - 1)
    df = df.withColumns(
        {
            "obs_start": F.col("t0"),
            "obs_end": F.least(
                F.lit(plan.end_day),
                F.coalesce(F.col("death_day") - 1, never),
                F.coalesce(F.col("emigration_day") - 1, never),
            ),
        }
    )
    return df.withColumn(
        "age_mid", ((F.col("obs_start") + F.col("obs_end")) / 2 - F.col("birth_day")) / 365.25
    )


def _add_places_and_frailty(df: DataFrame, prescribers: PrescriberPlan) -> DataFrame:
    """Age bands, the yearly exit hazard, county, frailty, the GP and the birth year."""
    county_codes = F.array(*[F.lit(c) for c, _ in cat.COUNTIES])
    county = item(county_codes, pick(_u("county"), [w for _, w in cat.COUNTIES]) + 1)
    gp = prescribers.pool("gp")
    z = F.sqrt(F.lit(-2.0) * F.log(_u("frailty1"))) * F.cos(F.lit(2 * math.pi) * _u("frailty2"))
    return df.withColumns(
        {
            "band": _band(F.col("age_mid")),
            # Yearly hazard of leaving the population (death or emigration) at mid-period age:
            # treatment episodes of those who leave are taken up by others (see dispensings).
            "exit_hazard": F.least(
                F.lit(1.0),
                F.exp(F.lit(cat.MORTALITY_A) + F.lit(cat.MORTALITY_B) * F.col("age_mid"))
                * _sex_factor()
                + F.col("_emig_rate"),
            ),
            "band_start": _band((F.col("obs_start") - F.col("birth_day")) / 365.25),
            "band_end": _band((F.col("obs_end") - F.col("birth_day")) / 365.25),
            "county": F.when(_u("county_missing") >= cat.COUNTY_MISSING, county),
            # Frailty: log-normal with mean 1; spreads occasional use over-dispersedly.
            "frailty": F.exp(F.lit(0.8) * z - F.lit(0.32)),
            "gp_idx": (F.lit(gp.offset) + F.floor(_u("gp") * gp.count)).cast("long"),
            "birth_year": F.year(as_date(F.col("birth_day"))),
        }
    )


def _add_conditions(df: DataFrame) -> DataFrame:
    """has_<condition>: an adult's background prevalence by sex, or LDN's indication."""
    is_female = F.col("sex") == 2
    adult = F.col("age_mid") >= 18
    conditions = {}
    for name, (p_female, p_male) in cat.CONDITIONS.items():
        background = adult & (
            _u(f"cond_{name}") < F.when(is_female, F.lit(p_female)).otherwise(F.lit(p_male))
        )
        from_ldn = F.col("ldn_start").isNotNull() & (F.col("ldn_indication") == name)
        conditions[f"has_{name}"] = background | F.coalesce(from_ldn, F.lit(False))
    return df.withColumns(conditions)


def _add_ldn(df: DataFrame, *, plan: PopulationPlan, prescribers: PrescriberPlan) -> DataFrame:
    """Who starts LDN in the period and how: start day, exposure class, first-year fills,
    persistence, opioid pattern, indication, reimbursement and doctor (null for non-users)."""
    df = _add_ldn_draws(df, plan)
    start, ldn_class, u = F.col("_start"), F.col("_class"), _u
    observed = (
        (start >= F.col("obs_start"))
        & (start <= F.col("obs_end"))
        & (start >= plan.start_day)
        & (start <= plan.end_day)
    )
    n_first_year = (
        F.when(ldn_class == 1, F.lit(1))
        .when(ldn_class == 2, F.when(u("ldn_two") < cat.LDN_TWO_OF_TWO_THREE, 2).otherwise(3))
        .otherwise(F.lit(4))
    )
    df = df.withColumn("_user", F.col("_candidate") & observed)
    is_user = F.col("_user")
    df = df.withColumns(
        {
            "ldn_start": F.when(is_user, start),
            "ldn_class": F.when(is_user, ldn_class.cast("int")),
            "ldn_first_year_fills": F.when(is_user, n_first_year.cast("int")),
            "ldn_persist_days": (
                F.lit(3) * F.col("ldn_gap")
                + F.floor(-F.log(u("ldn_persist")) * cat.LDN_PERSIST_EXTRA_DAYS)
            ).cast("int"),
            "ldn_opioid_type": F.when(is_user, _ldn_opioid_type().cast("int")).otherwise(F.lit(0)),
            "ldn_ramp_days": (
                F.lit(cat.EFFECT_RAMP_DAYS[0])
                + F.floor(u("ldn_ramp") * (cat.EFFECT_RAMP_DAYS[1] - cat.EFFECT_RAMP_DAYS[0] + 1))
            ).cast("int"),
            "ldn_indication": F.when(is_user, _ldn_indication()),
            "ldn_reimbursement": _ldn_reimbursement(),
            "ldn_doctor": _ldn_doctor(prescribers).cast("long"),
        }
    )
    return df.drop("_month", "_class", "_candidate", "_start", "_user")


def _add_ldn_draws(df: DataFrame, plan: PopulationPlan) -> DataFrame:
    """The LDN candidates (by age and sex, scaled to the plan's rate), their start day, pack,
    strength, exposure class and the days one pack lasts (ldn_gap)."""
    u = _u
    mid_2013 = day_number(date(2013, 7, 1))
    age13 = (F.lit(mid_2013) - F.col("birth_day")) / 365.25
    weight = _ldn_weight(age13, F.col("sex") == 2)
    mean_weight = expected_ldn_weight(plan)
    p_select = F.least(F.lit(1.0), F.lit(plan.ldn_rate / mean_weight) * weight)
    candidate = (
        ~F.col("naltrexone_user") & ~F.col("ldn_early_user") & (u("ldn") < p_select)
        if plan.ldn_rate > 0
        else F.lit(False)
    )
    firsts, lengths = _month_table(plan)
    units = F.array(*[F.lit(n) for n, _ in cat.LDN_PACK_UNITS])
    df = df.withColumns(
        {
            "_month": pick(u("ldn_month"), cat.LDN_START_MONTHS),
            "ldn_units_pos": pick(u("ldn_units"), [w for _, w in cat.LDN_PACK_UNITS]),
            "ldn_strength_pos": pick(u("ldn_strength"), [w for _, w in cat.LDN_STRENGTHS]),
            "_class": pick(u("ldn_class"), cat.LDN_CLASS_SHARES) + 1,
            "_candidate": candidate,
        }
    )
    month = F.col("_month")
    start = item(F.array(*map(F.lit, firsts)), month + 1) + F.floor(
        u("ldn_day") * item(F.array(*map(F.lit, lengths)), month + 1)
    )
    adherence = F.lit(cat.LDN_ADHERENCE[0]) + F.lit(cat.LDN_ADHERENCE[1]) * u("ldn_adherence")
    return df.withColumns(
        {
            "_start": start.cast("int"),
            "ldn_gap": F.round(item(units, F.col("ldn_units_pos") + 1) * adherence).cast("int"),
        }
    )


def _ldn_opioid_type() -> Column:
    """0 no opioids, 1 regular use, 2 flares."""
    op = _u("ldn_opioid")
    return (
        F.when(op < cat.LDN_OPIOID_REGULAR, F.lit(1))
        .when(op < cat.LDN_OPIOID_REGULAR + cat.LDN_OPIOID_FLARES, F.lit(2))
        .otherwise(F.lit(0))
    )


def _ldn_indication() -> Column:
    indications = F.array(*[F.lit(n) for n, _ in cat.LDN_INDICATIONS])
    return item(indications, pick(_u("ldn_indication"), [w for _, w in cat.LDN_INDICATIONS]) + 1)


def _ldn_reimbursement() -> Column:
    reimb = _u("ldn_reimbursement")
    return (
        F.when(reimb < cat.LDN_HOSPITAL, F.lit("h"))
        .when(reimb < cat.LDN_HOSPITAL + cat.LDN_BLUE, F.lit("blue"))
        .otherwise(F.lit("white"))
    )


def _ldn_doctor(prescribers: PrescriberPlan) -> Column:
    """The LDN doctor: the person's own GP when that GP prescribes LDN, else a willing doctor."""
    pool_size = prescribers.ldn_willing_gps + prescribers.ldn_willing_others
    gp = prescribers.pool("gp")
    own_gp_willing = (F.col("gp_idx") - gp.offset) < prescribers.ldn_willing_gps
    j = F.floor(_u("ldn_doctor") * pool_size).cast("long")
    pooled = F.when(j < prescribers.ldn_willing_gps, F.lit(gp.offset) + j).otherwise(
        F.lit(gp.offset + gp.count) + (j - prescribers.ldn_willing_gps)
    )
    return F.when(own_gp_willing & (_u("ldn_own_gp") < 0.75), F.col("gp_idx")).otherwise(pooled)
