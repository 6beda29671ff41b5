"""The one call the study pipeline makes: person-level frames in, outcome result tables out."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from rxcohort.errors import ConfigError, RxCohortError
from rxcohort.stats.its import summarise_its, summarise_trajectories
from rxcohort.stats.outcomes import (
    person_outcomes,
    summarise_did_results,
    summarise_group_results,
    summarise_responders,
)


def default_contrasts(group_order: Sequence[str]) -> list[tuple[str, str]]:
    """The highest against the lowest exposure group, e.g. [("ldn_4plus", "ldn_1")]."""
    groups = list(dict.fromkeys(group_order))
    return [(groups[-1], groups[0])] if len(groups) >= 2 else []


def compute_outcome_tables(
    cohort: pd.DataFrame,
    consumption: pd.DataFrame,
    monthly: pd.DataFrame | None = None,
    *,
    group_order: Sequence[str],
    drug_groups: Sequence[str],
    contrasts: Sequence[tuple[str, str]] | None = None,
    responder_threshold: float = 0.30,
    its_lag_months: int | Sequence[int] = 0,
) -> dict[str, pd.DataFrame]:
    """group_results, did_results, responders and (given ``monthly``) trajectories, its_results.

    ``cohort`` needs person_id and exposure_group, ``consumption`` the columns of CONTRACT §4,
    ``monthly`` the collected output of ``summarise_monthly_ddd``. ``group_order`` lists the
    exposure groups from lowest to highest exposure; ``contrasts`` are (high, low) pairs and
    default to the highest against the lowest. The frames have the dtypes of
    :mod:`rxcohort.stats.frames`; write them with ``frames.to_spark``.
    """
    groups = list(dict.fromkeys(group_order))
    drugs = list(dict.fromkeys(drug_groups))
    if not groups:
        raise ConfigError("statistics need at least one exposure group")
    if not drugs:
        raise ConfigError("statistics need at least one drug group")
    pairs = default_contrasts(groups) if contrasts is None else [tuple(c) for c in contrasts]
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(groups):
            raise ConfigError(
                f"contrast {list(pair)} must name two different exposure groups among {groups}"
            )
    unknown = sorted(set(cohort["exposure_group"].dropna()) - set(groups))
    if unknown or cohort["exposure_group"].isna().any():
        raise RxCohortError(
            f"cohort has exposure groups {unknown or ['<null>']} that are not among {groups}"
        )
    persons = person_outcomes(cohort, consumption, drug_groups=drugs)
    tables = {
        "group_results": summarise_group_results(persons, group_order=groups, drug_groups=drugs),
        "did_results": summarise_did_results(persons, contrasts=pairs, drug_groups=drugs),
        "responders": summarise_responders(
            persons, group_order=groups, drug_groups=drugs, threshold=responder_threshold
        ),
    }
    if monthly is not None:
        trajectories = summarise_trajectories(monthly, group_order=groups, drug_groups=drugs)
        tables["trajectories"] = trajectories
        tables["its_results"] = summarise_its(
            trajectories, group_order=groups, drug_groups=drugs, lag_months=its_lag_months
        )
    return tables
