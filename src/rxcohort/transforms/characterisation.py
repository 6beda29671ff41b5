"""Table 1: who the cohort's persons are at the index date (the ``characteristics`` table), and
how far apart the exposure groups are (``characteristics_smd``).

Per exposure group and for the whole cohort (``exposure_group = 'all'``), in one long table:

- ``sex``: ``female`` and ``male``, n and percent;
- ``age``: age at index, mean, SD (sample) and quartiles (linear interpolation);
- ``drug_use`` / ``drug_ddd``: for each drug group, its users in the characterisation window
  (n, percent) and the DDD of the group's persons there (users or not: mean, SD, quartiles;
  ``n`` there is the users again, the count the DDD rests on);
- ``condition``: persons with a reimbursed dispensing in the window whose code starts with one
  of a named condition's codes (the study's reimbursement criteria and the conditions its
  ``characterisation`` section names);
- ``code_chapter``: the same by the code's first letter. NorPD's code field holds ICPC-2 (GPs)
  and ICD-10 (specialists) codes without saying which, so a letter stands for the ICPC-2
  chapter and the ICD-10 codes that begin with it (``L``: ICPC-2 musculoskeletal, ICD-10 skin);
- ``comedication``: persons with a dispensing (packs > 0) of an ATC level-3 group in the window,
  for the groups with the most users in the cohort.

The standardised mean difference of each row between two groups (a contrast: high, low) is
``(m_h - m_l) / sqrt((s_h^2 + s_l^2) / 2)``, with ``p (1 - p)`` as the variance of a share
(Austin, Stat Med 2009;28:3083). Person-level frames are collected by the caller; everything
here on them is pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.contract import SEX_CODES
from rxcohort.privacy import ALL_GROUPS
from rxcohort.transforms.codes import starts_with_any

SEX_LEVELS = (("female", SEX_CODES["female"]), ("male", SEX_CODES["male"]))
CONDITION, CHAPTER, COMEDICATION = "condition", "code_chapter", "comedication"
BINARY = ("sex", "drug_use", CONDITION, CHAPTER, COMEDICATION)
CONTINUOUS = ("age", "drug_ddd")
_STATS = ("mean", "sd", "q1", "median", "q3")


def person_markers(
    cohort: DataFrame,
    dispensings: DataFrame,
    *,
    window: tuple[int, int],
    conditions: Mapping[str, Sequence[str]],
    code_chapters: bool,
) -> DataFrame:
    """Distinct (person_id, variable, level) of the cohort's persons in ``window`` (days from
    the index date, both included): a named condition, a code's first letter, an ATC level-3
    group. Dispensings with packs > 0 only."""
    days = F.datediff(F.col("dispense_date"), F.col("index_date"))
    inside = (
        dispensings.select("person_id", "dispense_date", "atc_code", "packs", "reimbursement_code")
        .join(cohort.select("person_id", "index_date"), "person_id")
        .where(days.between(window[0], window[1]) & (F.col("packs") > 0))
    )
    parts = [
        inside.select(
            "person_id",
            F.lit(COMEDICATION).alias("variable"),
            F.substring("atc_code", 1, 4).alias("level"),
        )
    ]
    coded = inside.where(F.col("reimbursement_code").isNotNull())
    if conditions:
        names = F.array(
            *[
                F.when(starts_with_any("reimbursement_code", list(codes)), F.lit(name))
                for name, codes in conditions.items()
            ]
        )
        parts.append(
            coded.select("person_id", F.explode(names).alias("level"))
            .where(F.col("level").isNotNull())
            .select("person_id", F.lit(CONDITION).alias("variable"), "level")
        )
    if code_chapters:
        parts.append(
            coded.select(
                "person_id",
                F.lit(CHAPTER).alias("variable"),
                F.upper(F.substring("reimbursement_code", 1, 1)).alias("level"),
            )
        )
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out.distinct()


def characteristics_table(
    cohort: pd.DataFrame,
    consumption: pd.DataFrame | None,
    markers: pd.DataFrame | None,
    *,
    groups: Sequence[str],
    drug_groups: Sequence[str],
    window: str,
    conditions: Sequence[str] = (),
    comedication_top: int = 10,
) -> pd.DataFrame:
    """The ``characteristics`` rows (see the module doc). ``cohort``: person_id,
    exposure_group, sex (1/2 or male/female), age_at_index; ``consumption``: the study's
    person x drug group x window rows; ``markers``: :func:`person_markers`, collected.
    ``groups`` in the order shown; persons of no group count in ``all`` only."""
    persons = cohort[["person_id", "exposure_group", "sex", "age_at_index"]].copy()
    persons["female"] = persons["sex"].map(_is_sex(2))
    persons["male"] = persons["sex"].map(_is_sex(1))
    parts = [("all", persons)] + [(g, persons[persons["exposure_group"] == g]) for g in groups]
    rows: list[dict[str, object]] = []
    use = _window_use(consumption, window)
    chosen = _marker_levels(markers, conditions, comedication_top)
    flags = _marker_sets(markers)
    for label, part in parts:
        label = ALL_GROUPS if label == "all" else label
        n = len(part)
        for level, _ in SEX_LEVELS:
            rows.append(_share(label, "sex", level, None, int(part[level].sum()), n))
        rows.append(_numbers(label, "age", "", None, None, n, part["age_at_index"]))
        ids = set(part["person_id"])
        for drug in drug_groups:
            ddd = use.get(drug, {})
            values = pd.Series(
                [ddd.get(p, (0.0, False))[0] for p in part["person_id"]], dtype=float
            )
            users = sum(1 for p in part["person_id"] if ddd.get(p, (0.0, False))[1])
            rows.append(_share(label, "drug_use", drug, window, users, n))
            rows.append(_numbers(label, "drug_ddd", drug, window, users, n, values))
        for variable, level in chosen:
            holders = flags.get((variable, level), set())
            rows.append(_share(label, variable, level, window, len(holders & ids), n))
    return pd.DataFrame(rows, columns=CHARACTERISTICS_COLUMNS)


CHARACTERISTICS_COLUMNS = (
    "exposure_group",
    "variable",
    "level",
    "window",
    "n_persons",
    "n",
    "percent",
    *_STATS,
)


def _is_sex(code: int) -> Callable[[object], bool]:
    words = {2: ("2", "female", "f"), 1: ("1", "male", "m")}[code]
    return lambda value: value is not None and str(value).strip().lower() in words


def _share(
    group: str, variable: str, level: str, window: str | None, n: int, n_persons: int
) -> dict[str, object]:
    percent = 100.0 * n / n_persons if n_persons else None
    return {"exposure_group": group, "variable": variable, "level": level, "window": window,
            "n_persons": n_persons, "n": n, "percent": percent}  # fmt: skip


def _numbers(
    group: str,
    variable: str,
    level: str,
    window: str | None,
    n: int | None,
    n_persons: int,
    values: pd.Series,
) -> dict[str, object]:
    values = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    row: dict[str, object] = {"exposure_group": group, "variable": variable, "level": level,
                              "window": window, "n_persons": n_persons, "n": n}  # fmt: skip
    if len(values):
        q1, median, q3 = values.quantile([0.25, 0.5, 0.75]).tolist()
        row.update(mean=values.mean(), sd=values.std(ddof=1) if len(values) > 1 else None,
                   q1=q1, median=median, q3=q3)  # fmt: skip
    return row


def _window_use(consumption: pd.DataFrame | None, window: str) -> dict[str, dict]:
    """drug group -> person -> (DDD, is_user) in ``window``."""
    if consumption is None or consumption.empty:
        return {}
    part = consumption[consumption["window"] == window]
    out: dict[str, dict] = {}
    for drug, person, ddd, user in part[["drug_group", "person_id", "ddd", "is_user"]].itertuples(
        index=False, name=None
    ):
        out.setdefault(drug, {})[person] = (float(ddd), bool(user))
    return out


def _marker_sets(markers: pd.DataFrame | None) -> dict[tuple[str, str], set]:
    if markers is None or markers.empty:
        return {}
    out: dict[tuple[str, str], set] = {}
    for person, variable, level in markers[["person_id", "variable", "level"]].itertuples(
        index=False, name=None
    ):
        out.setdefault((variable, level), set()).add(person)
    return out


def _marker_levels(
    markers: pd.DataFrame | None, conditions: Sequence[str], top: int
) -> list[tuple[str, str]]:
    """Every named condition (held by someone or not), the code letters held, and the ``top``
    ATC level-3 groups by users in the cohort (ties by code)."""
    levels = [(CONDITION, c) for c in conditions]
    if markers is None or markers.empty:
        return levels
    users = markers.groupby(["variable", "level"])["person_id"].nunique()
    chapters = sorted(level for (variable, level) in users.index if variable == CHAPTER)
    levels += [(CHAPTER, c) for c in chapters]
    comed = sorted(
        ((-n, level) for (variable, level), n in users.items() if variable == COMEDICATION)
    )
    levels += [(COMEDICATION, level) for _, level in comed[:top]]
    return levels


def smd_table(characteristics: pd.DataFrame, contrasts: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The ``characteristics_smd`` rows: per contrast (high, low) and row of ``characteristics``,
    both groups' persons and counts and the standardised mean difference (undefined where a
    group is empty or both have no spread)."""
    keyed = {
        (r["exposure_group"], r["variable"], r["level"]): r
        for r in characteristics.to_dict("records")
    }
    order = list(
        characteristics[["variable", "level"]].drop_duplicates().itertuples(index=False, name=None)
    )
    rows = []
    for high, low in contrasts:
        for variable, level in order:
            a, b = keyed.get((high, variable, level)), keyed.get((low, variable, level))
            if a is None or b is None:
                continue
            rows.append({
                "exposure_group_high": high,
                "exposure_group_low": low,
                "variable": variable,
                "level": level,
                "window": a["window"],
                "n_persons_high": a["n_persons"],
                "n_persons_low": b["n_persons"],
                "n_high": a["n"],
                "n_low": b["n"],
                "smd": _smd(variable, a, b),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=SMD_COLUMNS)


SMD_COLUMNS = (
    "exposure_group_high",
    "exposure_group_low",
    "variable",
    "level",
    "window",
    "n_persons_high",
    "n_persons_low",
    "n_high",
    "n_low",
    "smd",
)


def _smd(variable: str, a: Mapping[str, object], b: Mapping[str, object]) -> float | None:
    if not a["n_persons"] or not b["n_persons"]:
        return None
    if variable in CONTINUOUS:
        ma, mb, sa, sb = (
            _number(a["mean"]),
            _number(b["mean"]),
            _number(a["sd"]),
            _number(b["sd"]),
        )
        if None in (ma, mb, sa, sb):
            return None
        spread = math.sqrt((sa**2 + sb**2) / 2)
    else:
        ma, mb = a["n"] / a["n_persons"], b["n"] / b["n_persons"]  # type: ignore[operator]
        spread = math.sqrt((ma * (1 - ma) + mb * (1 - mb)) / 2)
    if spread == 0:
        return 0.0 if ma == mb else None
    return (ma - mb) / spread  # type: ignore[operator]


def _number(value: object) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number
