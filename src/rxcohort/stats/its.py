"""Time to effect: monthly DDD trajectories and a segmented (interrupted time series) regression.

Input is the small frame :func:`rxcohort.transforms.trajectories.summarise_monthly_ddd`
computes in Spark: per exposure group x drug group x relative month, the persons, the users,
the mean and sample SD of a person's DDD in that month (persons without a dispensing count
as 0). Month k is days [ceil(365k/12), ceil(365(k+1)/12) - 1] after the index date, so months
-12..-1 tile the pre window and 0..11 the post window of CONTRACT §5 rule 7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rxcohort.errors import ParameterError, RxCohortError
from rxcohort.stats import inference as inf
from rxcohort.stats.frames import COLUMNS, finish

MONTHLY_COLUMNS = (
    "exposure_group",
    "drug_group",
    "month",
    "n_persons",
    "n_users",
    "mean_ddd",
    "sd_ddd",
)
ITS_PARAMETERS = ("baseline_level", "pre_slope", "level_change", "slope_change")


def summarise_trajectories(
    monthly: pd.DataFrame, *, group_order: Sequence[str], drug_groups: Sequence[str]
) -> pd.DataFrame:
    """trajectories: the monthly means with a t interval (mean +- t(n-1) * sd / sqrt(n)).

    Rows come in study order (exposure group, drug group, month); the interval is empty when a
    group has fewer than two persons or nobody's DDD varies (e.g. no one used the drug). The
    lower limit is cut at 0: a group's DDD per person per month is not negative (a return
    counts against the dispensing it undoes), so the interval holds no value below 0.
    """
    missing = [c for c in MONTHLY_COLUMNS if c not in monthly.columns]
    if missing:
        raise RxCohortError(f"monthly DDD summary lacks columns {missing}")
    frame = _in_study_order(monthly, group_order, drug_groups)
    intervals = [
        inf.mean_from_summary(_float(mean), _float(sd), int(n))
        for mean, sd, n in zip(frame["mean_ddd"], frame["sd_ddd"], frame["n_persons"], strict=True)
    ]
    frame = frame.assign(
        ci_low=[max(i.ci_low, 0.0) if math.isfinite(i.ci_low) else i.ci_low for i in intervals],
        ci_high=[i.ci_high for i in intervals],
    )
    return finish(frame, "trajectories")


def summarise_its(
    trajectories: pd.DataFrame,
    *,
    group_order: Sequence[str],
    drug_groups: Sequence[str],
    lag_months: int | Sequence[int] = 0,
) -> pd.DataFrame:
    """its_results: segmented regression of the monthly mean DDD, per group, drug group and lag.

    With t = months since the first month of the series and L = the lag, the model is
    ``mean_ddd = b0 + b1 t + b2 [month >= L] + b3 (month - L) [month >= L] + e``, fitted by OLS
    on months before the index (month < 0) and from month L on; months 0..L-1 are the
    transition while the drug takes effect and are left out. b0 = baseline_level (level at the
    first month), b1 = pre_slope (DDD per month), b2 = level_change (jump at month L against
    the extrapolated pre trend), b3 = slope_change. Intervals and p values use the classical
    OLS standard errors with n - 4 degrees of freedom.
    """
    lags = [lag_months] if isinstance(lag_months, int) else list(dict.fromkeys(lag_months))
    for lag in lags:
        if not isinstance(lag, int | np.integer) or lag < 0:
            raise ParameterError(f"ITS lag months must be whole months >= 0, not {lag!r}")
    frame = _in_study_order(trajectories, group_order, drug_groups)
    rows = []
    for (exposure_group, drug_group), cell in frame.groupby(
        ["exposure_group", "drug_group"], sort=False
    ):
        cell = cell[cell["mean_ddd"].notna()].sort_values("month")
        month = cell["month"].to_numpy(int)
        mean = cell["mean_ddd"].to_numpy(float)
        n_persons = int(cell["n_persons"].max()) if len(cell) else 0
        for lag in lags:
            keep = (month < 0) | (month >= lag)
            fit = _segmented_fit(month[keep], mean[keep], lag=int(lag))
            for parameter, estimate in zip(ITS_PARAMETERS, fit.estimates, strict=True):
                rows.append(
                    {
                        "exposure_group": exposure_group,
                        "drug_group": drug_group,
                        "lag_months": int(lag),
                        "parameter": parameter,
                        "estimate": estimate.estimate,
                        "ci_low": estimate.ci_low,
                        "ci_high": estimate.ci_high,
                        "p_value": estimate.p_value,
                        "n_persons": n_persons,
                        "n_months": int(keep.sum()),
                    }
                )
    return finish(pd.DataFrame(rows, columns=COLUMNS["its_results"]), "its_results")


def _segmented_fit(month: np.ndarray, mean: np.ndarray, *, lag: int) -> inf.OlsFit:
    n_pre = int((month < 0).sum())
    n_post = int((month >= lag).sum())
    if n_pre < 2 or n_post < 2:
        # A slope needs two points on each side; report the parameters as undefined.
        return inf.OlsFit(tuple(inf.Estimate(np.nan) for _ in ITS_PARAMETERS), len(month), 0)
    time = (month - month.min()).astype(float)
    after = (month >= lag).astype(float)
    design = np.column_stack([np.ones_like(time), time, after, (month - lag) * after])
    return inf.ols(mean, design)


def _in_study_order(
    frame: pd.DataFrame, group_order: Sequence[str], drug_groups: Sequence[str]
) -> pd.DataFrame:
    groups = list(dict.fromkeys(group_order))
    drugs = list(dict.fromkeys(drug_groups))
    unknown = sorted(set(frame["exposure_group"]) - set(groups))
    if unknown:
        raise RxCohortError(f"exposure groups {unknown} are not among the study's {groups}")
    frame = frame[frame["drug_group"].isin(drugs)].copy()
    frame["_g"] = frame["exposure_group"].map(groups.index)
    frame["_d"] = frame["drug_group"].map(drugs.index)
    return (
        frame.sort_values(["_g", "_d", "month"], kind="stable")
        .drop(columns=["_g", "_d"])
        .reset_index(drop=True)
    )


def _float(value: object) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]
