"""What the report's figures may show: small pandas frames in, plottable frames out.

A figure has no "<5" cell, so the rule for plots is: a bar, point or curve step that rests on
1-4 persons is not drawn (its value becomes NaN and the figure says so), or it is merged with
its neighbours until it rests on at least 5. The tables beside the figures carry the masked
values. Pure functions: no I/O, no plotting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from rxcohort.contract import table_spec
from rxcohort.errors import ParameterError
from rxcohort.privacy import MASKED_COUNT, MASKED_VALUE, SMALL_COUNT_MAX, is_small_count

MIN_SHOWN = SMALL_COUNT_MAX + 1
# The dose bands of the persistence step (rxcohort.persistence.episodes.add_dose_band).
BAND_ULTRA_LOW_BELOW = 1.0
BAND_LOW_UP_TO = 5.0


def _hidden_count(value: object) -> bool:
    """A count of 1-4, or one a table already shows as ``<5`` / ``masked``."""
    return is_small_count(value) or (
        isinstance(value, str) and value in (MASKED_COUNT, MASKED_VALUE)
    )


def _small(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    hidden = pd.Series(False, index=frame.index)
    for column in columns:
        if column in frame.columns:
            hidden |= frame[column].map(_hidden_count).astype(bool)
    return hidden


def _as_float(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def add_mean_ci(frame: pd.DataFrame, *, n: str = "n_persons", mean: str, sd: str) -> pd.DataFrame:
    """ci_low, ci_high: mean ± t(0.975, n − 1) · sd / √n; NaN below 2 persons or without sd.

    For DDD means: the lower limit is cut at 0 (a group's DDD is not negative).
    """
    out = _as_float(frame, [n, mean, sd])
    counts = out[n].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, counts - 1) * out[sd].to_numpy(dtype=float) / np.sqrt(counts)
    half = np.where(counts >= 2, half, np.nan)
    out["ci_low"] = np.maximum(out[mean] - half, 0.0)
    out["ci_high"] = out[mean] + half
    return out


def plottable_window_means(means: pd.DataFrame) -> pd.DataFrame:
    """Mean DDD per exposure group × drug group × window with its 95% CI, ready for bars.

    Input: exposure_group, drug_group, window, n_persons, n_users, mean_ddd, sd_ddd. A bar is
    hidden (``hidden`` True, values NaN) when the group has 1-4 persons or 1-4 of them used the
    drug group in the window: the mean is then essentially those persons' own DDD.
    """
    out = add_mean_ci(means, mean="mean_ddd", sd="sd_ddd")
    out["hidden"] = _small(means, ["n_persons", "n_users"]).to_numpy()
    out.loc[out["hidden"], ["mean_ddd", "ci_low", "ci_high"]] = np.nan
    return out


def plottable_trajectories(trajectories: pd.DataFrame) -> pd.DataFrame:
    """trajectories with each series (exposure group x drug group) drawn whole or not at all.

    A series is hidden (``hidden`` True, values NaN) when its group has 1-4 persons or any of
    its months rests on 1-4 users. Hiding only those months would bias the line: months with
    no user at all are shown as 0 while months with a few users are left out, so the points
    that remain lean towards zero. Whether a month is drawn thus never depends on how many
    users that month had.
    """
    out = _as_float(trajectories, ["mean_ddd", "ci_low", "ci_high"])
    small = pd.Series(_small(trajectories, ["n_persons", "n_users"]).to_numpy(), index=out.index)
    series = [out["exposure_group"], out["drug_group"]]
    hidden = small.groupby(series).transform("any").astype(bool).to_numpy()
    out["hidden"] = hidden
    out.loc[hidden, ["mean_ddd", "ci_low", "ci_high"]] = np.nan
    return out


def hidden_series(shown: pd.DataFrame) -> list[tuple[str, str]]:
    """(exposure group, drug group) of the series :func:`plottable_trajectories` hid."""
    rows = shown.loc[shown["hidden"], ["exposure_group", "drug_group"]].drop_duplicates()
    return [(str(g), str(d)) for g, d in rows.itertuples(index=False)]


def plottable_responders(responders: pd.DataFrame) -> pd.DataFrame:
    """responders with the share and CI set to NaN where persons, eligible or responders are 1-4."""
    out = _as_float(responders, ["prop_responders", "ci_low", "ci_high"])
    hidden = _small(responders, table_spec("responders").counts()).to_numpy()
    out["hidden"] = hidden
    out.loc[hidden, ["prop_responders", "ci_low", "ci_high"]] = np.nan
    return out


DID_COUNTS = table_spec("did_results").counts()


def plottable_did(did: pd.DataFrame) -> pd.DataFrame:
    """did_results rows whose counts are all 0 or at least 5 (a contrast rests on all of them)."""
    keep = ~_small(did, DID_COUNTS)
    return _as_float(did[keep], ["did", "ci_low", "ci_high"]).reset_index(drop=True)


@dataclass(frozen=True)
class DoseBin:
    order: int
    label: str
    band: str | None = None  # the dose band every dose of the bin falls in (None: no dose)


def dose_bins(*, width: float, upper: float) -> list[DoseBin]:
    """Histogram bins [0, w), [w, 2w), ..., [upper − w, upper], (upper, ∞) and "not estimated".

    The last finite bin includes ``upper`` so that, with ``upper`` = 5 mg, every bin lies
    inside one dose band (ultra-low < 1, low 1-5 inclusive, other > 5).
    """
    n = round(upper / width)
    if n < 1 or not math.isclose(n * width, upper):
        raise ParameterError("upper must be a whole number of bin widths")
    bins = [
        DoseBin(
            i, f"{_mg(i * width)} to <{_mg((i + 1) * width)}", _band(i * width, (i + 1) * width)
        )
        for i in range(n - 1)
    ]
    bins.append(
        DoseBin(
            n - 1, f"{_mg(upper - width)} to {_mg(upper)}", _band(upper - width, upper, closed=True)
        )
    )
    bins.append(DoseBin(n, f">{_mg(upper)}", "other" if upper >= BAND_LOW_UP_TO else None))
    bins.append(DoseBin(-1, "not estimated"))
    return bins


def _band(low: float, high: float, *, closed: bool = False) -> str | None:
    """The band of every dose in [low, high) ([low, high] when ``closed``), or None when the
    bin straddles two bands."""
    if high < BAND_ULTRA_LOW_BELOW or (high == BAND_ULTRA_LOW_BELOW and not closed):
        return "ultra_low"
    if low >= BAND_ULTRA_LOW_BELOW and high <= BAND_LOW_UP_TO:
        return "low"
    return "other" if low > BAND_LOW_UP_TO else None


def _mg(value: float) -> str:
    return f"{value:g}"


def histogram_table(counts: pd.DataFrame, bins: Sequence[DoseBin]) -> pd.DataFrame:
    """One row per bin (zeros included): bin_order, bin, band, n_persons (int) and hidden
    (1-4)."""
    by_order = dict(
        zip(counts["bin_order"].astype(int), counts["n_persons"].astype(int), strict=True)
    )
    rows = [
        {
            "bin_order": b.order,
            "bin": b.label,
            "band": b.band,
            "n_persons": by_order.get(b.order, 0),
        }
        for b in bins
    ]
    out = pd.DataFrame(rows, columns=["bin_order", "bin", "band", "n_persons"])
    out["hidden"] = out["n_persons"].map(is_small_count).astype(bool)
    return out


def km_number_at_risk(protected: pd.DataFrame, *, times: Sequence[float]) -> pd.DataFrame:
    """Persons at risk at each of ``times`` (days) per stratum, from the report's protected
    ``km_curves``: at day t, the ``at_risk`` of the stratum's first row at or after t (the
    persons whose time on treatment reaches t), so every number is one the protected table
    already shows - ``<5`` or ``masked`` where it does. None after the stratum's last time.

    Returns stratum_variable, stratum and one column ``at_<t>`` per time, in curve order.
    """
    out = []
    for (variable, stratum), part in protected.groupby(["stratum_variable", "stratum"], sort=False):
        rows = part.assign(_t=pd.to_numeric(part["time"], errors="coerce").astype(float))
        rows = rows.sort_values("_t")
        record: dict[str, object] = {"stratum_variable": variable, "stratum": stratum}
        for t in times:
            later = rows[rows["_t"] >= t]
            record[f"at_{t:g}"] = None if later.empty else later["at_risk"].iloc[0]
        out.append(record)
    columns = ["stratum_variable", "stratum", *(f"at_{t:g}" for t in times)]
    return pd.DataFrame(out, columns=columns)


def km_plot_points(curve: pd.DataFrame, *, step_days: float = 30.0) -> pd.DataFrame:
    """A Kaplan-Meier curve of one stratum, coarsened so that no step rests on 1-4 persons.

    ``curve`` has time, at_risk (just before time), events, censored, survival, ci_low,
    ci_high (one stratum, any order). The estimate is read every ``step_days`` days; a point is
    kept when the discontinuations since the last kept point number 0 or at least 5, and the
    curve stops before the first point after which 1-4 persons remain at risk. A stratum
    that starts with 1-4 persons gives no points. Returns time, survival, ci_low, ci_high, with
    a first point (0, 1, 1, 1) - or an empty frame.
    """
    columns = ["time", "survival", "ci_low", "ci_high"]
    if curve.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    rows = _as_float(curve, ["time", "survival", "ci_low", "ci_high"]).sort_values("time")
    rows = rows.reset_index(drop=True)
    start = int(rows["at_risk"].iloc[0])
    if start < MIN_SHOWN:
        return pd.DataFrame(columns=columns, dtype=float)
    times = rows["time"].to_numpy()
    cum_events = rows["events"].astype(int).cumsum().to_numpy()
    cum_out = (rows["events"].astype(int) + rows["censored"].astype(int)).cumsum().to_numpy()
    points = [(0.0, 1.0, 1.0, 1.0)]
    kept_events = 0
    grid_end = math.ceil(times[-1] / step_days) * step_days
    for t in np.arange(step_days, grid_end + step_days / 2, step_days):
        last = np.searchsorted(times, t, side="right") - 1
        if last < 0:
            continue
        remaining = start - int(cum_out[last])
        new_events = int(cum_events[last]) - kept_events
        if 0 < remaining < MIN_SHOWN:
            break
        if new_events == 0 or new_events >= MIN_SHOWN:
            survival = rows["survival"].iloc[last]
            low, high = rows["ci_low"].iloc[last], rows["ci_high"].iloc[last]
            points.append((float(t), float(survival), float(low), float(high)))
            kept_events = int(cum_events[last])
        if remaining == 0:
            break
    return pd.DataFrame(points, columns=columns, dtype=float)


def plottable_use_over_time(protected: pd.DataFrame) -> pd.DataFrame:
    """The monthly rows of ``use_over_time`` for all ages, as the report's protected copy has
    them, with ``per_1000`` and its interval as floats: NaN (a gap in the line) where the
    table shows ``<5`` or ``masked`` users, or a population it hides."""
    rows = protected[(protected["period_type"] == "month") & (protected["age_band"] == "all")]
    hidden = _small(rows, ["n_users", "n_population"])
    out = _as_float(rows, ["per_1000", "ci_low", "ci_high"])
    out.loc[hidden, ["per_1000", "ci_low", "ci_high"]] = np.nan
    out["period_start"] = pd.to_datetime(out["period_start"])
    return out.sort_values(["drug", "sex", "period_start"]).reset_index(drop=True)
