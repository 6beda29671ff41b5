"""km_curves as it leaves the warehouse: a life table on a 30-day grid, checked against counts
and a product-limit estimate computed here from the durations themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rxcohort.persistence.survival import fit_km_curves, km_curves_by_interval

# time on treatment (days) and whether it ended in a discontinuation
DURATIONS = [0, 3, 3, 12, 29, 30, 30, 31, 45, 45, 59, 60, 61, 88, 95, 95, 100, 140]
EVENTS = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
SEX = ["female", "male"] * 9


def _persistence() -> pd.DataFrame:
    return pd.DataFrame({"time_days": DURATIONS, "event": EVENTS, "sex": SEX})


def _product_limit(durations: np.ndarray, events: np.ndarray, up_to: float) -> float:
    """S(t) for the last distinct time below ``up_to``, by the product-limit formula."""
    survival = 1.0
    for t in sorted(set(durations[durations < up_to])):
        d = int(((durations == t) & (events == 1)).sum())
        n = int((durations >= t).sum())
        survival *= 1 - d / n
    return survival


@pytest.mark.parametrize("every", [30.0, 7.0])
def test_intervals_count_the_persons_and_keep_the_estimate(every: float) -> None:
    pdf = _persistence()
    grid = km_curves_by_interval(fit_km_curves(pdf, strata=["sex"]), every_days=every)
    for (variable, stratum), part in grid.groupby(["stratum_variable", "stratum"]):
        mine = pdf if variable == "overall" else pdf[pdf[variable] == stratum]
        d = mine["time_days"].to_numpy(dtype=float)
        e = mine["event"].to_numpy()
        expected_starts = np.arange(0, np.floor(d.max() / every) + 1) * every
        assert part["time"].tolist() == expected_starts.tolist()
        for _, row in part.iterrows():
            start, end = row["time"], row["time"] + every
            inside = (d >= start) & (d < end)
            assert row["at_risk"] == (d >= start).sum()
            assert row["events"] == (inside & (e == 1)).sum()
            assert row["censored"] == (inside & (e == 0)).sum()
            assert row["survival"] == pytest.approx(_product_limit(d, e, end))
        # the next interval's persons at risk are this one's less those ending in it
        ar = part["at_risk"].to_numpy()
        out = (part["events"] + part["censored"]).to_numpy()
        assert (ar[1:] == ar[:-1] - out[:-1]).all()


def test_the_confidence_interval_is_the_one_at_the_interval_end() -> None:
    curves = fit_km_curves(_persistence(), strata=[])
    grid = km_curves_by_interval(curves, every_days=30.0)
    at_59 = curves[curves["time"] == 59.0].iloc[0]
    row = grid[grid["time"] == 30.0].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (at_59["ci_low"], at_59["ci_high"])


def test_an_empty_table_and_a_bad_grid() -> None:
    empty = km_curves_by_interval(fit_km_curves(_persistence().iloc[:0], strata=[]))
    assert empty.empty and list(empty.columns)[:3] == ["stratum_variable", "stratum", "time"]
    with pytest.raises(ValueError, match="positive"):
        km_curves_by_interval(fit_km_curves(_persistence(), strata=[]), every_days=0)


def test_the_report_protects_the_curve_on_the_grid() -> None:
    from rxcohort.report.sections import ReportData, protect_report

    curves = fit_km_curves(_persistence(), strata=["sex"])
    data = ReportData(study_id="s", generated_at="2025-01-01 00:00", km_curves=curves)
    published = protect_report(data, only="km_curves")["km_curves"]
    grid = km_curves_by_interval(curves)
    shown = grid[grid["at_risk"] >= 5]  # this data's risk sets only shrink below 5 at the end
    assert set(published["time"].astype(float)) == set(shown["time"]) == {0.0, 30.0, 60.0}
    assert len(published) < len(curves)


def test_the_published_curves_stop_before_fewer_than_five_are_at_risk() -> None:
    from rxcohort.persistence.survival import km_curves_published

    curves = fit_km_curves(_persistence(), strata=["sex"])
    grid = km_curves_by_interval(curves)
    published = km_curves_published(curves)
    for (variable, stratum), part in grid.groupby(["stratum_variable", "stratum"]):
        rows = part.sort_values("time")
        below = rows.index[rows["at_risk"] < 5]
        cut = rows.loc[: below[0]].iloc[:-1] if len(below) else rows
        kept = published[
            (published["stratum_variable"] == variable) & (published["stratum"] == stratum)
        ]
        assert kept["time"].tolist() == cut["time"].tolist(), (variable, stratum)
        assert (kept["at_risk"] >= 5).all()
    assert km_curves_published(curves.iloc[:0]).empty
