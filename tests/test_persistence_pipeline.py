"""build_persistence_tables end to end against a plain-Python walk of the same dispensings."""

from __future__ import annotations

import random
from datetime import date, timedelta

from rxcohort.persistence import build_persistence_tables
from rxcohort.persistence.analysis import (
    COX_RESULTS_SCHEMA,
    KM_CURVES_SCHEMA,
    KM_MEDIANS_SCHEMA,
)
from rxcohort.persistence.episodes import DOSE_COLUMNS, EPISODE_COLUMNS
from rxcohort.persistence.follow_up import PERSISTENCE_COLUMNS

DAY0 = date(2013, 1, 1)
DATA_END = date(2014, 6, 30)
GRACE = 30
COHORT = (
    "person_id string, index_date date, exposure_group string, n_index_drug_dispensings int, "
    "sex int, age_at_index int, birth_year int, index_strength_mg double, "
    "index_prescriber_id string, death_date date, emigration_date date"
)
DISPENSINGS = (
    "dispensing_id string, person_id string, dispense_date date, atc_code string, "
    "strength_mg double, units_per_pack double, packs double, prescriber_id string"
)


def _synthetic(n: int, seed: int):
    rng = random.Random(seed)
    cohort, dispensings = [], []
    for p in range(n):
        pid = f"p{p:03d}"
        index = DAY0 + timedelta(days=rng.randint(0, 300))
        strength = rng.choice([1.5, 3.0, 4.5, 0.5])
        death = index + timedelta(days=rng.randint(20, 500)) if rng.random() < 0.15 else None
        prescriber = rng.choice(["gp1", "gp2", "neuro1", None])
        cohort.append(
            (pid, index, "ldn_1", 1, rng.choice([1, 2]), rng.randint(25, 85), 1960, strength,
             prescriber, death, None)
        )  # fmt: skip
        d = index
        for k in range(rng.choice([1, 1, 2, 3, 5, 8])):
            units = rng.choice([30.0, 50.0, 100.0])
            dispensings.append((f"{pid}_{k}", pid, d, "N07BB04", strength, units, 1.0, prescriber))
            d = d + timedelta(days=int(units) + rng.choice([-20, -5, 0, 10, 25, 29, 31, 60]))
            if d > DATA_END or (death is not None and d > death):
                break
    return cohort, dispensings


def _oracle(cohort, dispensings):
    """Time on the first episode and the event, walking each person's dispensings in Python."""
    by_person: dict[str, list] = {}
    for did, pid, d, _atc, _s, units, packs, _pr in dispensings:
        by_person.setdefault(pid, []).append((d, did, int(units * packs)))
    out = {}
    for pid, index, *_rest, death, emig in cohort:
        end = None
        for d, _did, supply in sorted(by_person[pid]):
            if end is not None and (d - end).days - 1 > GRACE:
                break
            start = d if end is None else max(d, end + timedelta(days=1))
            end = start + timedelta(days=supply - 1)
        obs_end = min(x for x in (death, emig, DATA_END) if x is not None)
        if end + timedelta(days=GRACE + 1) <= obs_end:
            out[pid] = ((end - index).days + 1, 1)
        else:
            out[pid] = ((min(end, obs_end) - index).days + 1, 0)
    return out


def _km_median(pairs):
    """Product-limit estimate; the first time it is at or below one half."""
    s = 1.0
    for t in sorted({t for t, _ in pairs}):
        at_risk = sum(1 for u, _ in pairs if u >= t)
        events = sum(e for u, e in pairs if u == t)
        s *= 1 - events / at_risk
        if s <= 0.5:
            return float(t)
    return None


def test_build_persistence_tables_end_to_end(spark):
    cohort_rows, disp_rows = _synthetic(120, seed=7)
    cohort = spark.createDataFrame(cohort_rows, COHORT)
    dispensings = spark.createDataFrame(disp_rows, DISPENSINGS)
    prescribers = spark.createDataFrame(
        [("gp1", "physician", "general_practice"), ("gp2", "physician", "general_practice"),
         ("neuro1", "physician", "neurology")],
        "prescriber_id string, profession string, specialty string",
    )  # fmt: skip
    baseline = spark.createDataFrame(
        [(pid, float(i % 7) * 30.0) for i, (pid, *_r) in enumerate(cohort_rows)],
        "person_id string, baseline_opioid_ddd double",
    )
    tables = build_persistence_tables(
        cohort, dispensings, prescribers, baseline, grace_days=GRACE, data_end=DATA_END
    )
    assert sorted(tables) == [
        "cox_results", "dose", "episodes", "km_curves", "km_medians", "persistence"
    ]  # fmt: skip
    assert tuple(tables["episodes"].columns) == EPISODE_COLUMNS
    assert tuple(tables["dose"].columns) == DOSE_COLUMNS
    assert tuple(tables["persistence"].columns) == PERSISTENCE_COLUMNS
    assert tables["km_curves"].schema == KM_CURVES_SCHEMA
    assert tables["km_medians"].schema == KM_MEDIANS_SCHEMA
    assert tables["cox_results"].schema == COX_RESULTS_SCHEMA

    expected = _oracle(cohort_rows, disp_rows)
    got = {
        r.person_id: (r.time_days, r.event)
        for r in tables["persistence"].select("person_id", "time_days", "event").collect()
    }
    assert got == expected

    medians = {(r.stratum_variable, r.stratum): r for r in tables["km_medians"].collect()}
    overall = medians[("overall", "all")]
    assert overall.n_persons == 120
    assert overall.n_events == sum(e for _, e in expected.values())
    assert overall.median_time == _km_median(list(expected.values()))
    assert {v for v, _ in medians} == {
        "overall",
        "sex",
        "age_band",
        "index_dose_band",
        "prior_opioid_use",
    }

    cox = tables["cox_results"].collect()
    assert cox[0].covariate == "(model)"
    assert cox[0].status in {"ok", "converged_with_warnings"}
    terms = {(r.covariate, r.level) for r in cox[1:]}
    assert ("age_at_index", "per 10") in terms
    assert ("sex", "male") in terms
    assert ("prescriber_specialty", "neurology") in terms


def test_build_persistence_tables_on_a_tiny_cohort_reports_instead_of_failing(spark):
    cohort_rows, disp_rows = _synthetic(3, seed=1)
    tables = build_persistence_tables(
        spark.createDataFrame(cohort_rows, COHORT),
        spark.createDataFrame(disp_rows, DISPENSINGS),
        spark.createDataFrame([], "prescriber_id string, profession string, specialty string"),
        None,
        grace_days=GRACE,
        data_end=DATA_END,
    )
    cox = tables["cox_results"].collect()
    assert [(r.covariate, r.status) for r in cox] == [("(model)", "insufficient_data")]
