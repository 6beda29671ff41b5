"""The Kaplan-Meier number-at-risk table: counted by hand, and masked like km_curves."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from rxcohort.disclosure import protect_tables
from rxcohort.persistence import fit_km_curves
from rxcohort.report.plotdata import km_number_at_risk
from rxcohort.report.sections import ReportData, section_km

# Days on treatment and whether treatment stopped (1) or follow-up ended (0).
DURATIONS = [10, 30, 30, 95, 120, 180, 181, 200, 250, 300, 365, 365, 365, 400, 420]
EVENTS = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0]


def _persistence(n_copies: int = 1) -> pd.DataFrame:
    rows = []
    for copy in range(n_copies):
        for i, (d, e) in enumerate(zip(DURATIONS, EVENTS, strict=True)):
            rows.append({"time_days": d, "event": e, "sex": "female" if (i + copy) % 2 else "male"})
    return pd.DataFrame(rows)


def test_the_number_at_risk_is_the_persons_whose_time_reaches_the_day():
    curves = fit_km_curves(_persistence(), strata=["sex"])
    times = [0.0, 90.0, 180.0, 270.0, 360.0, 450.0]
    table = km_number_at_risk(curves, times=times).set_index(["stratum_variable", "stratum"])
    frame = _persistence()
    for (variable, stratum), row in table.iterrows():
        part = frame if variable == "overall" else frame[frame[variable] == stratum]
        last = part["time_days"].max()
        for t in times:
            expected = None if t > last else int((part["time_days"] >= t).sum())
            assert row[f"at_{t:g}"] == expected, (variable, stratum, t)
    # By hand, overall: 15 at day 0; 12 reach day 90 (10, 30 and 30 do not); 10 reach day 180;
    # 6 reach day 270 (300, 365 three times, 400, 420); 5 reach day 360; none is followed to 450.
    overall = table.loc[("overall", "all")]
    assert [overall[f"at_{t:g}"] for t in times] == [15, 12, 10, 6, 5, None]


def test_the_table_shows_only_what_the_protected_curves_show():
    curves = fit_km_curves(_persistence(), strata=["sex"])
    protected = protect_tables({"km_curves": curves})["km_curves"]
    times = [0.0, 90.0, 180.0, 270.0, 360.0]
    table = km_number_at_risk(protected, times=times)
    shown = set(map(str, protected["at_risk"]))
    values = table[[f"at_{t:g}" for t in times]].to_numpy().ravel()
    assert all(v is None or str(v) in shown for v in values)
    # No 1-4 is left: 5 and 6 at the last days of the overall curve, hidden in the strata.
    assert not any(isinstance(v, int | np.integer) and 1 <= v <= 4 for v in values)
    assert {"<5", "masked"} & set(map(str, values))


def _blocks() -> pd.DataFrame:
    """Five persons stop at each of days 30, 100, 200 and 300 and five are followed to day 400,
    in each sex; three women are followed to day 450."""
    rows = []
    for sex in ("female", "male"):
        for day in (30, 100, 200, 300):
            rows += [{"time_days": day, "event": 1, "sex": sex}] * 5
        rows += [{"time_days": 400, "event": 0, "sex": sex}] * 5
    rows += [{"time_days": 450, "event": 0, "sex": "female"}] * 3
    return pd.DataFrame(rows)


def test_the_km_section_has_the_risk_table_with_small_counts_masked():
    curves = fit_km_curves(_blocks(), strata=["sex"])
    html = section_km(
        ReportData(study_id="s", generated_at="2025-01-01 00:00", km_curves=curves)
    ).body
    table = html[html.index("Number at risk") :].split("</table>")[0]
    header = re.findall(r"<th>(Day \d+)</th>", table)
    assert header == ["Day 0", "Day 90", "Day 180", "Day 270", "Day 360", "Day 450"]
    rows = [
        re.findall(r'<span class="count">([^<]*)</span>', row)
        for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]
    ]
    # At day 450 three women are at risk: the curves stop before (fewer than 5 at risk).
    assert rows == [
        ["53", "43", "33", "23", "13", "–"],
        ["28", "23", "18", "13", "8", "–"],
        ["25", "20", "15", "10", "5", "–"],
    ]
