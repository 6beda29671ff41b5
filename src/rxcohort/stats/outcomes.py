"""Before/after statistics per exposure group and drug group, on person-level pandas frames.

The inputs are the study's ``cohort`` and ``consumption`` tables collected once to the driver
(a cohort is thousands of persons, not millions of rows); nothing here reads or writes.
``person_outcomes`` turns them into one row per person x drug group with the pre and post
windows side by side; the ``summarise_*`` functions aggregate that frame into the result
tables of CONTRACT §4 (group_results, did_results) and the responders table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rxcohort.errors import ParameterError, RxCohortError
from rxcohort.stats import inference as inf
from rxcohort.stats.frames import COLUMNS, finish

PERSON_COLUMNS = (
    "person_id",
    "exposure_group",
    "drug_group",
    "ddd_pre",
    "ddd_post",
    "is_user_pre",
    "is_user_post",
)

# A fall of exactly the threshold counts as a response; the tolerance keeps 10 -> 7 DDD a 30%
# fall despite 0.7 not being exact in binary floating point.
_RESPONSE_TOLERANCE = 1e-9


def person_outcomes(
    cohort: pd.DataFrame, consumption: pd.DataFrame, *, drug_groups: Sequence[str]
) -> pd.DataFrame:
    """One row per cohort person x drug group: exposure_group, ddd_pre/post, is_user_pre/post.

    Every cohort person gets a row for every drug group in ``drug_groups``. CONTRACT §4 has
    consumption hold a row per person x drug group x window, zeros included; a missing row
    means no dispensing and counts as 0 DDD, not a user. Consumption rows of persons outside
    the cohort, of other drug groups or of windows other than pre and post are ignored. A
    person x drug group x window that appears twice is an upstream defect and raises.
    """
    _require_columns(cohort, ("person_id", "exposure_group"), "cohort")
    _require_columns(
        consumption, ("person_id", "drug_group", "window", "ddd", "is_user"), "consumption"
    )
    if cohort["person_id"].duplicated().any():
        raise RxCohortError(
            f"cohort has {int(cohort['person_id'].duplicated().sum())} duplicated person rows"
        )
    windows = set(consumption["window"].unique())
    if len(consumption) and not {"pre", "post"} <= windows:
        raise RxCohortError(f"consumption needs windows 'pre' and 'post', found {sorted(windows)}")
    consumption = consumption[consumption["window"].isin(["pre", "post"])]
    keys = ["person_id", "drug_group", "window"]
    duplicated = consumption.duplicated(keys)
    if duplicated.any():
        raise RxCohortError(
            f"consumption has {int(duplicated.sum())} duplicated person x drug group x window rows"
        )
    groups = list(dict.fromkeys(drug_groups))
    wide = (
        consumption[consumption["drug_group"].isin(groups)]
        .pivot(index=["person_id", "drug_group"], columns="window", values=["ddd", "is_user"])
        .reindex(columns=pd.MultiIndex.from_product([["ddd", "is_user"], ["pre", "post"]]))
    )
    wide.columns = [f"{value}_{window}" for value, window in wide.columns]
    wide = wide.reset_index()
    grid = cohort[["person_id", "exposure_group"]].merge(
        pd.DataFrame({"drug_group": groups}), how="cross"
    )
    persons = grid.merge(wide, on=["person_id", "drug_group"], how="left")
    for column in ("ddd_pre", "ddd_post"):
        persons[column] = persons[column].astype("float64").fillna(0.0)
    for column in ("is_user_pre", "is_user_post"):
        persons[column] = persons[column].astype("boolean").fillna(False).astype(bool)
    return persons[list(PERSON_COLUMNS)]


def summarise_group_results(
    persons: pd.DataFrame, *, group_order: Sequence[str], drug_groups: Sequence[str]
) -> pd.DataFrame:
    """group_results: one row per exposure group x drug group (CONTRACT §4, §5 rule 11).

    mean_diff is the mean of per-person (post - pre) DDD with the paired t interval and p
    value; rel_change = mean_diff / mean_ddd_pre with a delta-method interval; users are
    persons with ``is_user`` in the window; the change in the share of users has Newcombe's
    paired interval. A group without persons gets n_persons = 0 and empty statistics.
    """
    rows = []
    for (exposure_group, drug_group), cell in _cells(persons, group_order, drug_groups):
        pre = cell["ddd_pre"].to_numpy(float)
        post = cell["ddd_post"].to_numpy(float)
        n = pre.size
        diff = inf.paired_mean(post - pre)
        rel = inf.ratio_of_means(post - pre, pre)
        users = _paired_users(cell)
        rows.append(
            {
                "exposure_group": exposure_group,
                "drug_group": drug_group,
                "n_persons": n,
                "mean_ddd_pre": _mean(pre),
                "mean_ddd_post": _mean(post),
                "mean_diff": diff.estimate,
                "ci_low": diff.ci_low,
                "ci_high": diff.ci_high,
                "rel_change": rel.estimate,
                "users_pre": int(cell["is_user_pre"].sum()),
                "users_post": int(cell["is_user_post"].sum()),
                "sd_diff": float(np.std(post - pre, ddof=1)) if n >= 2 else np.nan,
                "p_value": diff.p_value,
                "rel_change_ci_low": rel.ci_low,
                "rel_change_ci_high": rel.ci_high,
                "prop_users_pre": users.prop_pre,
                "prop_users_post": users.prop_post,
                "prop_diff": users.diff.estimate,
                "prop_diff_ci_low": users.diff.ci_low,
                "prop_diff_ci_high": users.diff.ci_high,
            }
        )
    return finish(pd.DataFrame(rows, columns=COLUMNS["group_results"]), "group_results")


def summarise_did_results(
    persons: pd.DataFrame, *, contrasts: Sequence[tuple[str, str]], drug_groups: Sequence[str]
) -> pd.DataFrame:
    """did_results: one row per drug group x contrast (CONTRACT §4, §5 rule 12).

    For a contrast (high, low) named ``<high>_vs_<low>``: did = mean_diff(high) - mean_diff(low)
    with Welch's two-sample t interval and p value on the per-person differences; did_users_pp
    is the difference of the two groups' changes in the share of users, in percentage points,
    with the two Newcombe intervals combined by MOVER.
    """
    rows = []
    for drug_group in dict.fromkeys(drug_groups):
        in_drug = persons[persons["drug_group"] == drug_group]
        for high, low in contrasts:
            cell_high = in_drug[in_drug["exposure_group"] == high]
            cell_low = in_drug[in_drug["exposure_group"] == low]
            d_high = (cell_high["ddd_post"] - cell_high["ddd_pre"]).to_numpy(float)
            d_low = (cell_low["ddd_post"] - cell_low["ddd_pre"]).to_numpy(float)
            did = inf.welch_difference(d_high, d_low)
            users = inf.mover_difference(
                _paired_users(cell_high).diff, _paired_users(cell_low).diff
            )
            rows.append(
                {
                    "drug_group": drug_group,
                    "contrast": contrast_name(high, low),
                    "did": did.estimate,
                    "ci_low": did.ci_low,
                    "ci_high": did.ci_high,
                    "p_value": did.p_value,
                    "exposure_group_high": high,
                    "exposure_group_low": low,
                    "n_persons_high": len(cell_high),
                    "n_persons_low": len(cell_low),
                    "users_pre_high": int(cell_high["is_user_pre"].sum()),
                    "users_post_high": int(cell_high["is_user_post"].sum()),
                    "users_pre_low": int(cell_low["is_user_pre"].sum()),
                    "users_post_low": int(cell_low["is_user_post"].sum()),
                    "mean_diff_high": _mean(d_high),
                    "mean_diff_low": _mean(d_low),
                    "did_users_pp": 100 * users.estimate,
                    "did_users_pp_ci_low": 100 * users.ci_low,
                    "did_users_pp_ci_high": 100 * users.ci_high,
                }
            )
    return finish(pd.DataFrame(rows, columns=COLUMNS["did_results"]), "did_results")


def summarise_responders(
    persons: pd.DataFrame,
    *,
    group_order: Sequence[str],
    drug_groups: Sequence[str],
    threshold: float = 0.30,
) -> pd.DataFrame:
    """responders: per exposure group x drug group, the share whose DDD fell by >= threshold.

    Among persons with ddd_pre > 0 (``n_eligible``), a responder has
    ddd_post <= (1 - threshold) * ddd_pre, a fall of exactly the threshold included; the share
    has a Wilson interval. The registry analogue of a >= 30% reduction in pain.
    """
    if not 0 < threshold <= 1:
        raise ParameterError(f"responder threshold must be in (0, 1], not {threshold}")
    rows = []
    for (exposure_group, drug_group), cell in _cells(persons, group_order, drug_groups):
        pre = cell["ddd_pre"].to_numpy(float)
        post = cell["ddd_post"].to_numpy(float)
        eligible = pre > 0
        fell = (pre - post) >= (threshold - _RESPONSE_TOLERANCE) * pre
        n_eligible = int(eligible.sum())
        n_responders = int((eligible & fell).sum())
        share = inf.wilson(n_responders, n_eligible)
        rows.append(
            {
                "exposure_group": exposure_group,
                "drug_group": drug_group,
                "threshold": float(threshold),
                "n_persons": len(cell),
                "n_eligible": n_eligible,
                "n_responders": n_responders,
                "prop_responders": share.estimate,
                "ci_low": share.ci_low,
                "ci_high": share.ci_high,
            }
        )
    return finish(pd.DataFrame(rows, columns=COLUMNS["responders"]), "responders")


def contrast_name(high: str, low: str) -> str:
    """The contrast label of CONTRACT §5 rule 12, e.g. ``ldn_4plus_vs_ldn_1``."""
    return f"{high}_vs_{low}"


@dataclass(frozen=True)
class _Users:
    prop_pre: float
    prop_post: float
    diff: inf.Estimate


def _paired_users(cell: pd.DataFrame) -> _Users:
    pre = cell["is_user_pre"].to_numpy(bool)
    post = cell["is_user_post"].to_numpy(bool)
    n = pre.size
    if n == 0:
        return _Users(np.nan, np.nan, inf.Estimate(np.nan))
    diff = inf.newcombe_paired(
        both=int((post & pre).sum()),
        first_only=int((post & ~pre).sum()),
        second_only=int((~post & pre).sum()),
        neither=int((~post & ~pre).sum()),
    )
    return _Users(float(pre.mean()), float(post.mean()), diff)


def _cells(
    persons: pd.DataFrame, group_order: Sequence[str], drug_groups: Sequence[str]
) -> Iterator[tuple[tuple[str, str], pd.DataFrame]]:
    """(exposure group, drug group) pairs in study order, each with its persons (maybe none)."""
    by_cell: dict[tuple[str, str], pd.DataFrame] = {
        key: frame for key, frame in persons.groupby(["exposure_group", "drug_group"], sort=False)
    }
    empty = persons.iloc[0:0]
    for exposure_group in dict.fromkeys(group_order):
        for drug_group in dict.fromkeys(drug_groups):
            yield (exposure_group, drug_group), by_cell.get((exposure_group, drug_group), empty)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else np.nan


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RxCohortError(f"{name} lacks columns {missing}")


__all__: list[str] = [
    "person_outcomes",
    "summarise_did_results",
    "summarise_group_results",
    "summarise_responders",
]
