"""The ``summarised_result`` export: a study's protected result tables in the long format of
DARWIN EU's omopgenerics, which its viewers and its R packages (visOmopResults,
CohortCharacteristics, IncidencePrevalence) read.

Every estimate of every exported table becomes one row of thirteen text columns. A table's
*layout* says where each of its key columns goes:

- ``group``: the cohort a row describes (``exposure_group``);
- ``strata``: a subset of its persons (``sex``, ``age_band``; a Kaplan-Meier stratum). A
  stratum column at ``all`` is the whole and is left out of the strata, so the row for
  everyone reads ``overall``, as omopgenerics writes it;
- ``variable_level``: what is measured in them (the drug group, the drug);
- ``additional``: every other key (a step, a month, a threshold, a period).

and, for each value column, its ``variable_name``, ``estimate_name`` and ``estimate_type``.
Names of several columns are joined with `` &&& ``, their levels likewise, in the same order.

The values are those :func:`rxcohort.disclosure.protect_tables` leaves: a count of 1-4
persons reads ``<5`` (omopgenerics' ``<{minCellCount}``), a value hidden beside it reads ``-``
(its mark for a linked estimate), an undefined statistic is empty (NA). ``settings.csv`` has
one row per result (per table): its type, the package and version, the study, the run,
``min_cell_count`` and the names its groups, strata and additional columns use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from rxcohort import __version__
from rxcohort.privacy import (
    ALL_GROUPS,
    MASKED_COUNT,
    MASKED_VALUE,
    MASKING_RULES,
    SMALL_COUNT_MAX,
)

RESULT_COLUMNS: tuple[str, ...] = (
    "result_id",
    "cdm_name",
    "group_name",
    "group_level",
    "strata_name",
    "strata_level",
    "variable_name",
    "variable_level",
    "estimate_name",
    "estimate_type",
    "estimate_value",
    "additional_name",
    "additional_level",
)
SETTINGS_COLUMNS: tuple[str, ...] = (
    "result_id",
    "result_type",
    "package_name",
    "package_version",
    "group",
    "strata",
    "additional",
    "min_cell_count",
    "study_id",
    "table_name",
    "run_id",
)
OVERALL = "overall"  # omopgenerics' group/strata name and level for everyone
JOIN = " &&& "
LINKED_MARK = "-"  # omopgenerics' mark for an estimate suppressed because of another
MIN_CELL_COUNT = SMALL_COUNT_MAX + 1

INTEGER, NUMERIC, PROPORTION, CHARACTER = "integer", "numeric", "proportion", "character"
PERCENTAGE = "percentage"


@dataclass(frozen=True)
class Estimate:
    """Where one value column goes: ``variable`` None takes the variable name from the
    layout's ``variable_name_from`` column."""

    variable: str | None
    name: str
    type: str


@dataclass(frozen=True)
class Layout:
    """How one result table maps onto the summarised_result columns (see the module doc)."""

    result_type: str
    estimates: Mapping[str, Estimate]
    group: tuple[str, ...] = ()
    strata: tuple[str, ...] = ()
    # A (name column, level column) pair whose values are a stratum's name and level.
    strata_pair: tuple[str, str] | None = None
    variable_level: str | None = None
    variable_name_from: str | None = None
    # Keys that are neither group, strata nor variable: the rest of the table's keys.
    additional: tuple[str, ...] = field(default=())


def _ci(variable: str, estimate: str, *, kind: str = NUMERIC) -> dict[str, Estimate]:
    return {
        "ci_low": Estimate(variable, f"{estimate}_95CI_lower", kind),
        "ci_high": Estimate(variable, f"{estimate}_95CI_upper", kind),
    }


_SUBJECTS = Estimate("number subjects", "count", INTEGER)


def _by_drug_group(result_type: str, *, estimates: Mapping[str, Estimate]) -> Layout:
    """An outcome table of one exposure group and drug group a row: its persons, then
    ``estimates``."""
    return Layout(
        result_type=result_type,
        group=("exposure_group",),
        variable_level="drug_group",
        estimates={"n_persons": _SUBJECTS, **estimates},
    )


def _by_variable(
    result_type: str, *, group: tuple[str, ...], estimates: Mapping[str, Estimate]
) -> Layout:
    """A Table 1 table: one variable (named by the row) and level in a window a row."""
    return Layout(
        result_type=result_type,
        group=group,
        variable_name_from="variable",
        variable_level="level",
        additional=("window",),
        estimates=estimates,
    )


LAYOUTS: dict[str, Layout] = {
    # As CohortCharacteristics writes a cohort's attrition.
    "attrition": Layout(
        result_type="cohort_attrition",
        strata=("criterion",),
        additional=("step",),
        estimates={
            "n_persons": Estimate("number_subjects", "count", INTEGER),
            "n_excluded": Estimate("excluded_subjects", "count", INTEGER),
        },
    ),
    "group_results": _by_drug_group(
        "ddd_change",
        estimates={
            "users_pre": Estimate("users pre", "count", INTEGER),
            "users_post": Estimate("users post", "count", INTEGER),
            "prop_users_pre": Estimate("users pre", "proportion", PROPORTION),
            "prop_users_post": Estimate("users post", "proportion", PROPORTION),
            "mean_ddd_pre": Estimate("ddd pre", "mean", NUMERIC),
            "mean_ddd_post": Estimate("ddd post", "mean", NUMERIC),
            "mean_diff": Estimate("ddd change", "mean", NUMERIC),
            "sd_diff": Estimate("ddd change", "sd", NUMERIC),
            **_ci("ddd change", "mean"),
            "p_value": Estimate("ddd change", "p_value", NUMERIC),
            "rel_change": Estimate("ddd relative change", "ratio", NUMERIC),
            "rel_change_ci_low": Estimate("ddd relative change", "ratio_95CI_lower", NUMERIC),
            "rel_change_ci_high": Estimate("ddd relative change", "ratio_95CI_upper", NUMERIC),
            "prop_diff": Estimate("users change", "proportion_difference", NUMERIC),
            "prop_diff_ci_low": Estimate(
                "users change", "proportion_difference_95CI_lower", NUMERIC
            ),
            "prop_diff_ci_high": Estimate(
                "users change", "proportion_difference_95CI_upper", NUMERIC
            ),
        },
    ),
    "did_results": Layout(
        result_type="ddd_difference_in_differences",
        group=("exposure_group_high", "exposure_group_low"),
        variable_level="drug_group",
        estimates={
            "n_persons_high": Estimate("number subjects high", "count", INTEGER),
            "n_persons_low": Estimate("number subjects low", "count", INTEGER),
            "users_pre_high": Estimate("users pre high", "count", INTEGER),
            "users_post_high": Estimate("users post high", "count", INTEGER),
            "users_pre_low": Estimate("users pre low", "count", INTEGER),
            "users_post_low": Estimate("users post low", "count", INTEGER),
            "mean_diff_high": Estimate("ddd change high", "mean", NUMERIC),
            "mean_diff_low": Estimate("ddd change low", "mean", NUMERIC),
            "did": Estimate("ddd difference in differences", "mean", NUMERIC),
            **_ci("ddd difference in differences", "mean"),
            "p_value": Estimate("ddd difference in differences", "p_value", NUMERIC),
            "did_users_pp": Estimate(
                "users difference in differences", "percentage_points", NUMERIC
            ),
            "did_users_pp_ci_low": Estimate(
                "users difference in differences", "percentage_points_95CI_lower", NUMERIC
            ),
            "did_users_pp_ci_high": Estimate(
                "users difference in differences", "percentage_points_95CI_upper", NUMERIC
            ),
        },
    ),
    "responders": _by_drug_group(
        "ddd_responders",
        estimates={
            "n_eligible": Estimate("eligible", "count", INTEGER),
            "n_responders": Estimate("responders", "count", INTEGER),
            "prop_responders": Estimate("responders", "proportion", PROPORTION),
            **_ci("responders", "proportion", kind=PROPORTION),
        },
    ),
    "trajectories": _by_drug_group(
        "ddd_trajectory",
        estimates={
            "n_users": Estimate("users", "count", INTEGER),
            "mean_ddd": Estimate("ddd", "mean", NUMERIC),
            "sd_ddd": Estimate("ddd", "sd", NUMERIC),
            **_ci("ddd", "mean"),
        },
    ),
    "its_results": _by_drug_group(
        "ddd_interrupted_time_series",
        estimates={
            "estimate": Estimate("ddd segmented regression", "estimate", NUMERIC),
            **_ci("ddd segmented regression", "estimate"),
            "p_value": Estimate("ddd segmented regression", "p_value", NUMERIC),
        },
    ),
    "km_curves": Layout(
        result_type="survival_probability",
        strata_pair=("stratum_variable", "stratum"),
        estimates={
            "at_risk": Estimate("number at risk", "count", INTEGER),
            "events": Estimate("number events", "count", INTEGER),
            "censored": Estimate("number censored", "count", INTEGER),
            "survival": Estimate("survival probability", "estimate", PROPORTION),
            **_ci("survival probability", "estimate", kind=PROPORTION),
        },
    ),
    "km_medians": Layout(
        result_type="survival_median",
        strata_pair=("stratum_variable", "stratum"),
        estimates={
            "n_persons": _SUBJECTS,
            "n_events": Estimate("number events", "count", INTEGER),
            "median_time": Estimate("days on treatment", "median", NUMERIC),
            "median_ci_low": Estimate("days on treatment", "median_95CI_lower", NUMERIC),
            "median_ci_high": Estimate("days on treatment", "median_95CI_upper", NUMERIC),
        },
    ),
    "cox_results": Layout(
        result_type="cox_proportional_hazards",
        variable_name_from="covariate",
        variable_level="level",
        estimates={
            "n_persons": Estimate(None, "count", INTEGER),
            "n_events": Estimate(None, "events_count", INTEGER),
            "coef": Estimate(None, "coef", NUMERIC),
            "se_coef": Estimate(None, "se_coef", NUMERIC),
            "hr": Estimate(None, "hazard_ratio", NUMERIC),
            "ci_low": Estimate(None, "hazard_ratio_95CI_lower", NUMERIC),
            "ci_high": Estimate(None, "hazard_ratio_95CI_upper", NUMERIC),
            "p_value": Estimate(None, "p_value", NUMERIC),
            "ph_test_stat": Estimate(None, "ph_test_statistic", NUMERIC),
            "ph_p_value": Estimate(None, "ph_p_value", NUMERIC),
            "status": Estimate(None, "status", CHARACTER),
            "note": Estimate(None, "note", CHARACTER),
        },
    ),
    # As IncidencePrevalence writes a prevalence: outcome and denominator counts, the rate.
    "use_over_time": Layout(
        result_type="use_over_time",
        strata=("sex", "age_band"),
        variable_level="drug",
        estimates={
            "n_users": Estimate("users", "outcome_count", INTEGER),
            "n_new_users": Estimate("new users", "outcome_count", INTEGER),
            "n_population": Estimate("population", "denominator_count", INTEGER),
            "per_1000": Estimate("users", "per_1000", NUMERIC),
            **_ci("users", "per_1000"),
        },
    ),
    # As CohortCharacteristics' summariseCharacteristics: one row per estimate of a variable.
    "characteristics": _by_variable(
        "summarise_characteristics",
        group=("exposure_group",),
        estimates={
            "n_persons": Estimate(None, "denominator_count", INTEGER),
            "n": Estimate(None, "count", INTEGER),
            "percent": Estimate(None, "percentage", PERCENTAGE),
            "mean": Estimate(None, "mean", NUMERIC),
            "sd": Estimate(None, "sd", NUMERIC),
            "q1": Estimate(None, "q25", NUMERIC),
            "median": Estimate(None, "median", NUMERIC),
            "q3": Estimate(None, "q75", NUMERIC),
        },
    ),
    "characteristics_smd": _by_variable(
        "standardised_mean_difference",
        group=("exposure_group_high", "exposure_group_low"),
        estimates={
            "n_persons_high": Estimate(None, "denominator_count_high", INTEGER),
            "n_persons_low": Estimate(None, "denominator_count_low", INTEGER),
            "n_high": Estimate(None, "count_high", INTEGER),
            "n_low": Estimate(None, "count_low", INTEGER),
            "smd": Estimate(None, "smd", NUMERIC),
        },
    ),
    "prescriber_summary": Layout(
        result_type="prescriber_summary",
        group=("unit",),
        strata_pair=("category", "level"),
        estimates={
            "n": Estimate("share", "count", INTEGER),
            "n_total": Estimate("share", "denominator_count", INTEGER),
            "share": Estimate("share", "proportion", PROPORTION),
            **_ci("share", "proportion", kind=PROPORTION),
        },
    ),
}


def layout_keys(table: str) -> tuple[str, ...]:
    """The keys of ``table`` its layout places in ``additional``: every key of its masking
    rule that is neither group, strata nor variable, after those the layout names."""
    layout = LAYOUTS[table]
    placed = {*layout.group, *layout.strata, *(layout.strata_pair or ())}
    placed |= {layout.variable_level, layout.variable_name_from} - {None}
    rest = [k for k in MASKING_RULES[table].keys if k not in placed and k not in layout.additional]
    return (*layout.additional, *rest)


def to_summarised_result(
    table: str, frame: pd.DataFrame, *, result_id: int, cdm_name: str
) -> pd.DataFrame:
    """The rows of one protected result table in the 13 summarised_result columns, in the
    table's row order and, within a row, its layout's estimate order."""
    layout = LAYOUTS[table]
    additional = [k for k in layout_keys(table) if k in frame.columns]
    estimates = [(c, e) for c, e in layout.estimates.items() if c in frame.columns]
    # A column no layout names yet is written under its own name rather than dropped.
    placed = {*layout.group, *layout.strata, *(layout.strata_pair or ()), *additional}
    placed |= {layout.variable_level, layout.variable_name_from} - {None}
    for column in frame.columns:
        if column not in placed and column not in layout.estimates:
            kind = CHARACTER if frame[column].dtype == object else NUMERIC
            estimates.append((column, Estimate(column, "value", kind)))
    rows: list[tuple[object, ...]] = []
    for record in frame.to_dict("records"):
        group = _names_levels(record, layout.group, drop_whole=False)
        strata = _strata(record, layout)
        extra = _names_levels(record, additional, drop_whole=False)
        level = _text(record[layout.variable_level]) if layout.variable_level else None
        for column, estimate in estimates:
            variable = estimate.variable
            if variable is None:
                variable = _text(record[layout.variable_name_from])  # type: ignore[index]
            rows.append(
                (
                    result_id,
                    cdm_name,
                    *group,
                    *strata,
                    variable,
                    level,
                    estimate.name,
                    estimate.type,
                    _estimate_value(record[column], estimate.type),
                    *extra,
                )
            )
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def settings_row(
    table: str, frame: pd.DataFrame, *, result_id: int, study_id: str, run_id: str | None
) -> dict[str, object]:
    """The settings.csv row of one result: the names its groups, strata and extra columns use."""
    layout = LAYOUTS[table]
    strata: list[str] = []
    if layout.strata_pair is not None and layout.strata_pair[0] in frame.columns:
        strata = sorted({str(v) for v in frame[layout.strata_pair[0]].dropna()} - {OVERALL})
    else:
        strata = [c for c in layout.strata if c in frame.columns]
    return {
        "result_id": result_id,
        "result_type": layout.result_type,
        "package_name": "rxcohort",
        "package_version": __version__,
        "group": JOIN.join(c for c in layout.group if c in frame.columns),
        "strata": JOIN.join(strata),
        "additional": JOIN.join(k for k in layout_keys(table) if k in frame.columns),
        "min_cell_count": str(MIN_CELL_COUNT),
        "study_id": study_id,
        "table_name": table,
        "run_id": run_id or "",
    }


def write_summarised_result(
    protected: Mapping[str, pd.DataFrame],
    out_dir: Path,
    *,
    study_id: str,
    cdm_name: str,
    run_id: str | None,
) -> list[Path]:
    """Write ``summarised_result.csv`` and ``settings.csv`` for the protected tables (in the
    order given: result ids 1, 2, ...); return both paths."""
    results, settings = [], []
    for result_id, (table, frame) in enumerate(protected.items(), start=1):
        results.append(to_summarised_result(table, frame, result_id=result_id, cdm_name=cdm_name))
        settings.append(
            settings_row(table, frame, result_id=result_id, study_id=study_id, run_id=run_id)
        )
    result = (
        pd.concat(results, ignore_index=True)
        if results
        else pd.DataFrame(columns=list(RESULT_COLUMNS))
    )
    paths = [out_dir / "summarised_result.csv", out_dir / "settings.csv"]
    _write(result, paths[0])
    _write(pd.DataFrame(settings, columns=list(SETTINGS_COLUMNS)), paths[1])
    return paths


def _names_levels(
    record: Mapping[str, object], columns: Sequence[str], *, drop_whole: bool
) -> tuple[str, str]:
    pairs = [(c, _text(record[c])) for c in columns]
    if drop_whole:
        pairs = [(c, v) for c, v in pairs if v != ALL_GROUPS]
    pairs = [(c, "" if v is None else v) for c, v in pairs]
    if not pairs:
        return OVERALL, OVERALL
    return JOIN.join(c for c, _ in pairs), JOIN.join(v for _, v in pairs)


def _strata(record: Mapping[str, object], layout: Layout) -> tuple[str, str]:
    if layout.strata_pair is not None:
        name, level = (_text(record[c]) for c in layout.strata_pair)
        if name is None or name == OVERALL:
            return OVERALL, OVERALL
        return name, "" if level is None else level
    return _names_levels(record, layout.strata, drop_whole=True)


def _missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _text(value: object) -> str | None:
    """A key as text: ISO dates, integral numbers without a decimal point."""
    if _missing(value):
        return None
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _estimate_value(value: object, kind: str) -> str | None:
    if _missing(value):
        return None
    if isinstance(value, str):
        if value == MASKED_VALUE:
            return LINKED_MARK
        return value  # MASKED_COUNT, or a character estimate
    if kind == INTEGER:
        return str(int(value))  # type: ignore[call-overload]
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))  # type: ignore[arg-type]


def _write(frame: pd.DataFrame, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    frame.to_csv(partial, index=False, na_rep="", lineterminator="\n", encoding="utf-8")
    os.replace(partial, path)


# omopgenerics writes a suppressed count as "<{minCellCount}": the same text as ours.
assert f"<{MIN_CELL_COUNT}" == MASKED_COUNT
assert set(LAYOUTS) == set(MASKING_RULES)  # every exportable table has a layout
