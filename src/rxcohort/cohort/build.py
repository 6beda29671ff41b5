"""From a validated study and input frames to the cohort, attrition and consumption frames.

Pure: no reads, no writes, no collect. :mod:`rxcohort.pipelines.study` does the I/O around it.
The frames that later steps read again are computed once through the ``materialise`` hook of
:func:`build_study_tables` (local checkpoints by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.cohort import (
    Cohort,
    DrugDefinition,
    add_exposure_count,
    add_exposure_group,
    add_person_attributes,
    generate_index_cohort,
    require_age,
    require_drug_use,
    require_exposure_group,
    require_follow_up,
    require_new_users,
    require_reimbursement_code,
    require_sex,
)
from rxcohort.study.models import AgeRule, DrugRule, ReimbursementRule, SexRule, Study
from rxcohort.transforms.consumption import summarise_consumption
from rxcohort.transforms.dispensings import select_cohort_dispensings, select_study_dispensings

COHORT_COLUMNS = (
    "person_id",
    "index_date",
    "exposure_group",
    "n_index_drug_dispensings",
    "sex",
    "age_at_index",
    "birth_year",
    "index_strength_mg",
    "index_prescriber_id",
    "death_date",
    "emigration_date",
)


@dataclass(frozen=True)
class StudyTables:
    """The three tables every study writes (lazy frames until written), and the dispensings
    they were built from: the study's dispensings of the index cohort's persons, a superset of
    every cohort person's, for analyses that read dispensings of the cohort."""

    cohort: DataFrame
    attrition: DataFrame
    consumption: DataFrame
    dispensings: DataFrame


def index_drug_definition(study: Study) -> DrugDefinition:
    bounds = study.index_drug.strength_mg
    return DrugDefinition(
        label=study.index_drug.name,
        atc_prefixes=tuple(study.index_drug.atc),
        strength_min_mg=bounds.min if bounds else None,
        strength_max_mg=bounds.max if bounds else None,
    )


def required_data_range(study: Study) -> tuple[date, date]:
    """First and last dispensing day any window of any index date, or the calendar periods of
    ``use_over_time``, can reach."""
    first, last = study.day_span()
    start = study.index_period.start + timedelta(days=first)
    end = study.index_period.end + timedelta(days=last)
    calendar = study.use_over_time_period()
    if calendar is not None:
        start, end = min(start, calendar[0]), max(end, calendar[1])
    return (start, end)


def select_dispensings_for(study: Study, dispensings: DataFrame) -> DataFrame:
    """The study's one pass over silver dispensings (see :func:`select_study_dispensings`)."""
    date_from, date_to = required_data_range(study)
    index_from: date | None = date_from
    if study.new_users is not None:
        look_back = study.new_users.look_back_days
        index_from = (
            None
            if look_back is None
            else min(date_from, study.index_period.start - timedelta(days=look_back))
        )
    other: list[str] = [p for prefixes in study.drug_groups.values() for p in prefixes]
    codes: list[str] = []
    for _, rule in study.rules:
        if isinstance(rule, DrugRule | ReimbursementRule):
            atc = study.rule_atc(rule)
            if isinstance(rule, DrugRule) and atc:
                other.extend(atc)
            if isinstance(rule, ReimbursementRule):
                codes.extend(rule.codes)
    return select_study_dispensings(
        dispensings,
        index_atc_prefixes=study.index_drug.atc,
        index_from=index_from,
        other_atc_prefixes=sorted(set(other)),
        reimbursement_codes=sorted(set(codes)),
        date_from=date_from,
        date_to=date_to,
    )


def index_dispensings_for(study: Study, dispensings: DataFrame, *, date_to: date) -> DataFrame:
    """Silver dispensings of the study's index drug from the index period's start to ``date_to``.

    What the persistence analysis follows (from each index date to the end of data), read in
    one pass: the index drug's conditions and the dates are pushed into the Parquet reader and
    the ``dispense_year`` conditions skip whole partitions.
    """
    start = study.index_period.start
    keep = index_drug_definition(study).filter() & F.col("dispense_date").between(
        F.lit(start), F.lit(date_to)
    )
    if "dispense_year" in dispensings.columns:
        keep = F.col("dispense_year").between(start.year, date_to.year) & keep
    return dispensings.where(keep)


Materialise = Callable[[DataFrame], DataFrame]


def truncate_lineage(frame: DataFrame) -> DataFrame:
    """``frame`` computed now, kept in executor memory (spilling to disk), cut from its history.

    Each dispensing step joins the cohort twice (broadcast into the dispensings, then filtered
    by the result), so without a cut a later step's plan repeats every earlier step,
    2 ** steps times. Computed here, one job per step, so that later steps and the written
    tables start from the small result. A local checkpoint keeps no file; Spark drops its
    blocks once the frame is gone.
    """
    return frame.localCheckpoint(eager=True)


def build_study_tables(
    study: Study,
    *,
    dispensings: DataFrame,
    persons: DataFrame,
    materialise: Materialise | None = truncate_lineage,
) -> StudyTables:
    """Cohort, attrition and consumption for ``study``.

    ``dispensings`` are silver dispensings (all of them, or the rows of
    :func:`select_dispensings_for`), best unmaterialised: the index cohort's persons are found
    in a pass that Spark pushes into the Parquet reader. ``persons`` is silver persons.
    Attrition steps, in order: the index date, new users, full follow-up, each inclusion rule,
    each exclusion rule, and - only when the exposure groups leave counts uncovered - the
    exposure group.

    ``materialise`` (default :func:`truncate_lineage`; None applies nothing, for plans that
    should stay whole) is applied to the index cohort's dispensings (see
    :func:`~rxcohort.transforms.dispensings.select_cohort_dispensings`), which every step
    reads, and to the cohort after the steps that join it with them.
    """
    keep = materialise or (lambda frame: frame)
    drug = index_drug_definition(study)
    period = (study.index_period.start, study.index_period.end)
    # Every step reads the dispensings of index-cohort persons only: select all their rows once
    # (the persons found from the index drug's rows alone), and build every step, the index date
    # included, from that small selection.
    index_persons = generate_index_cohort(dispensings, index_drug=drug, period=period).frame
    dispensings = keep(select_cohort_dispensings(dispensings, index_persons))
    cohort = generate_index_cohort(dispensings, index_drug=drug, period=period)
    if study.new_users is not None:
        look_back = study.new_users.look_back_days
        cohort = cohort.then(
            require_new_users, dispensings, index_drug=drug, look_back_days=look_back
        )
    # After the new-user rule, which needs none of them, so that one materialisation serves both.
    cohort = cohort.map(add_person_attributes, persons).map(keep)
    if study.follow_up is not None:
        # A filter on the cohort's own columns: its plan stays small without materialising.
        follow_up = study.follow_up
        cohort = cohort.then(require_follow_up, days=follow_up.days, events=follow_up.events)
    for section, rule in study.rules:
        cohort = _apply_rule(study, cohort, dispensings, rule, exclude=section == "exclusion")
        if isinstance(rule, DrugRule | ReimbursementRule):
            cohort = cohort.map(keep)
    cohort = _add_exposure(study, cohort, dispensings, drug).map(
        lambda frame: keep(frame.select(*COHORT_COLUMNS))
    )
    consumption = summarise_consumption(
        cohort.frame,
        dispensings,
        drug_groups=study.drug_groups,
        windows={name: window.days for name, window in study.windows.items()},
    )
    return StudyTables(
        cohort=cohort.frame,
        attrition=cohort.attrition(),
        consumption=consumption,
        dispensings=dispensings,
    )


def _add_exposure(
    study: Study, cohort: Cohort, dispensings: DataFrame, drug: DrugDefinition
) -> Cohort:
    """The exposure count and group; the persons outside every group leave when the groups
    do not cover every count (the only case that adds an attrition step)."""
    window = study.window_days(study.exposure_window)
    bins = [(g.label, g.min, g.max) for g in study.exposure_groups]
    cohort = cohort.map(add_exposure_count, dispensings, index_drug=drug, window=window).map(
        add_exposure_group, bins=bins
    )
    if study.exposure_groups_cover_all_counts():
        return cohort
    labels = [g.label for g in study.exposure_groups]
    return cohort.then(require_exposure_group, drug_label=drug.label, window=window, labels=labels)


def _apply_rule(
    study: Study,
    cohort: Cohort,
    dispensings: DataFrame,
    rule: DrugRule | ReimbursementRule | AgeRule | SexRule,
    *,
    exclude: bool,
) -> Cohort:
    if isinstance(rule, DrugRule):
        atc = study.rule_atc(rule)
        assert atc is not None  # the model requires drug_group or atc
        return require_drug_use(
            cohort,
            dispensings,
            name=rule.name,
            atc_prefixes=atc,
            window=study.window_days(rule.window),
            min_count=rule.min_count,
            drug_label=rule.drug_group,
            exclude=exclude,
        )
    if isinstance(rule, ReimbursementRule):
        return require_reimbursement_code(
            cohort,
            dispensings,
            name=rule.name,
            codes=rule.codes,
            window=study.window_days(rule.window),
            min_count=rule.min_count,
            atc_prefixes=study.rule_atc(rule),
            drug_label=rule.drug_group,
            exclude=exclude,
        )
    if isinstance(rule, AgeRule):
        return require_age(
            cohort, name=rule.name, min_years=rule.min, max_years=rule.max, exclude=exclude
        )
    return require_sex(cohort, name=rule.name, sex=rule.sex, exclude=exclude)
