"""An independent, plain-Python reading of CONTRACT §5 (the reference study), used as an oracle.

It does not read the study file or import rxcohort: every number below is copied from the
contract text, so a study file or an engine that drifts from the contract disagrees with it.
Also: builders for silver-shaped rows and random silver data for the oracle checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# -- CONTRACT §5, rule by rule --------------------------------------------------------------------

LDN_ATC = "N07BB04"  # rule 1
LDN_MAX_STRENGTH_MG = 5.0  # rule 1
INDEX_PERIOD = (date(2013, 1, 1), date(2013, 12, 31))  # rule 2
FOLLOW_UP_DAYS = 364  # rule 4
PRIOR_OPIOID = ("N02A", -365, -1)  # rule 5
EXPOSURE_WINDOW = (0, 364)  # rule 6
WINDOWS = {"pre": (-365, -1), "post": (0, 364)}  # rule 7
DRUG_GROUPS = {"opioids": "N02A", "nsaids": "M01A", "other_analgesics": "N02B"}  # rule 9


def is_ldn(row: dict[str, Any]) -> bool:
    strength = row["strength_mg"]
    return (
        row["atc_code"] == LDN_ATC
        and strength is not None
        and strength <= LDN_MAX_STRENGTH_MG
        and row["packs"] > 0
    )


def exposure_group(n: int) -> str:
    if n == 1:
        return "ldn_1"
    if n in (2, 3):
        return "ldn_2_3"
    return "ldn_4plus"


@dataclass
class ReferenceResult:
    cohort: list[dict[str, Any]]
    attrition: list[tuple[int, int, int]]  # (step, n_persons, n_excluded)
    consumption: list[dict[str, Any]]


def reference_study(
    dispensings: list[dict[str, Any]], persons: list[dict[str, Any]]
) -> ReferenceResult:
    by_person: dict[str, list[dict[str, Any]]] = {}
    for row in dispensings:
        by_person.setdefault(row["person_id"], []).append(row)
    people = {p["person_id"]: p for p in persons}

    counts = []
    # Rule 2: index = earliest LDN dispensing in 2013 (ties: smallest dispensing_id).
    index: dict[str, dict[str, Any]] = {}
    for pid, rows in by_person.items():
        in_period = [
            r
            for r in rows
            if is_ldn(r) and INDEX_PERIOD[0] <= r["dispense_date"] <= INDEX_PERIOD[1]
        ]
        if in_period:
            index[pid] = min(in_period, key=lambda r: (r["dispense_date"], r["dispensing_id"]))
    counts.append(len(index))

    # Rule 3: no LDN at any time before the index date.
    kept = {
        pid
        for pid, first in index.items()
        if not any(
            is_ldn(r) and r["dispense_date"] < first["dispense_date"] for r in by_person[pid]
        )
    }
    counts.append(len(kept))

    # Rule 4: no death or emigration before index + 364.
    def followed(pid: str) -> bool:
        limit = index[pid]["dispense_date"] + timedelta(days=FOLLOW_UP_DAYS)
        person = people.get(pid, {})
        return all(
            person.get(c) is None or person[c] >= limit for c in ("death_date", "emigration_date")
        )

    kept = {pid for pid in kept if followed(pid)}
    counts.append(len(kept))

    # Rule 5: >= 1 opioid (N02A, packs > 0) on days -365..-1.
    prefix, start, end = PRIOR_OPIOID
    kept = {
        pid
        for pid in kept
        if any(
            r["atc_code"].startswith(prefix)
            and r["packs"] > 0
            and start <= _day(r, index[pid]) <= end
            for r in by_person[pid]
        )
    }
    counts.append(len(kept))

    cohort = []
    for pid in sorted(kept):
        first = index[pid]
        n = sum(
            1
            for r in by_person[pid]
            if is_ldn(r) and EXPOSURE_WINDOW[0] <= _day(r, first) <= EXPOSURE_WINDOW[1]
        )
        person = people.get(pid, {})
        birth_year = person.get("birth_year")
        cohort.append(
            {
                "person_id": pid,
                "index_date": first["dispense_date"],
                "exposure_group": exposure_group(n),
                "n_index_drug_dispensings": n,
                "sex": person.get("sex"),
                "age_at_index": None
                if birth_year is None
                else first["dispense_date"].year - birth_year,
                "birth_year": birth_year,
                "index_strength_mg": first["strength_mg"],
                "index_prescriber_id": first["prescriber_id"],
                "death_date": person.get("death_date"),
                "emigration_date": person.get("emigration_date"),
            }
        )

    consumption = []
    for person in cohort:
        pid = person["person_id"]
        for group, prefix in DRUG_GROUPS.items():
            for window, (w_start, w_end) in WINDOWS.items():
                rows = [
                    r
                    for r in by_person[pid]
                    if r["atc_code"].startswith(prefix) and w_start <= _day(r, index[pid]) <= w_end
                ]
                # Rules 8 and 10: returns subtract; unknown DDD adds nothing.
                ddd = sum(r["ddd"] for r in rows if r["ddd"] is not None)
                n = sum(1 for r in rows if r["packs"] > 0)
                consumption.append(
                    {
                        "person_id": pid,
                        "drug_group": group,
                        "window": window,
                        "ddd": float(ddd),
                        "n_dispensings": n,
                        "is_user": n > 0,
                        "n_ddd_unknown": sum(1 for r in rows if r["ddd"] is None),
                    }
                )

    attrition = [
        (step, n, 0 if step == 0 else counts[step - 1] - n) for step, n in enumerate(counts)
    ]
    return ReferenceResult(cohort=cohort, attrition=attrition, consumption=consumption)


def _day(row: dict[str, Any], first: dict[str, Any]) -> int:
    return (row["dispense_date"] - first["dispense_date"]).days


# -- silver-shaped rows ----------------------------------------------------------------------------

_SEQUENCE = iter(range(1, 10**9))


def dispensing(
    person_id: str,
    dispense_date: date,
    atc_code: str,
    *,
    strength_mg: float | None = None,
    packs: float = 1.0,
    ddd: float | None = 1.0,
    dispensing_id: str | None = None,
    prescriber_id: str | None = "P1",
    reimbursement_code: str | None = None,
    units_per_pack: float | None = 100.0,
    ddd_per_pack: float | None = None,
) -> dict[str, Any]:
    """A silver dispensings row with every column (defaults for what a scenario ignores)."""
    return {
        "dispensing_id": dispensing_id or f"D{next(_SEQUENCE):07d}",
        "person_id": person_id,
        "dispense_date": dispense_date,
        "atc_code": atc_code,
        "product_id": "000001",
        "product_name": "product",
        "magistral": atc_code == LDN_ATC,
        "strength_mg": strength_mg,
        "units_per_pack": units_per_pack,
        "packs": packs,
        "ddd_per_pack": ddd_per_pack,
        "ddd": ddd,
        "ddd_method": None if ddd is None else "registry",
        "prescriber_id": prescriber_id,
        "reimbursement": "white" if reimbursement_code is None else "blue",
        "reimbursement_code": reimbursement_code,
        "source_file": "dispensings/test.csv",
        "load_id": "test",
        "dispense_year": dispense_date.year,
    }


def ldn(person_id: str, dispense_date: date, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("strength_mg", 4.5)
    kwargs.setdefault("ddd", 0.5)
    return dispensing(person_id, dispense_date, LDN_ATC, **kwargs)


def person(
    person_id: str,
    *,
    sex: int | None = 2,
    birth_year: int | None = 1960,
    death_date: date | None = None,
    emigration_date: date | None = None,
    county: str | None = "03",
) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "sex": sex,
        "birth_year": birth_year,
        "death_date": death_date,
        "emigration_date": emigration_date,
        "county": county,
        "source_file": "persons.csv",
        "load_id": "test",
    }


def random_silver(seed: int, n_persons: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Random persons and dispensings crowded around the rules' boundary days.

    Each person gets a planned LDN start; other dispensings fall on offsets that sit on or next
    to a rule's boundary (-366, -365, -1, 0, 363, 364, 365 ...), so the oracle comparison
    exercises the edges. DDD values are multiples of 1/4, so sums are exact in any order.
    """
    rng = random.Random(seed)
    boundary = [-730, -366, -365, -364, -200, -2, -1, 0, 1, 100, 363, 364, 365, 366]
    persons, rows = [], []
    for i in range(n_persons):
        pid = f"X{i:05d}"
        start = date(2012, 10, 1) + timedelta(days=rng.randrange(0, 550))
        death = emigration = None
        if rng.random() < 0.15:
            death = start + timedelta(days=rng.choice([-5, 0, 362, 363, 364, 365, 500]))
        if rng.random() < 0.05:
            emigration = start + timedelta(days=rng.choice([100, 363, 364, 365]))
        persons.append(
            person(
                pid,
                sex=rng.choice([1, 2, 2]),
                birth_year=rng.choice([None, *range(1930, 2000)])
                if rng.random() < 0.05
                else rng.randrange(1930, 2000),
                death_date=death,
                emigration_date=emigration,
            )
        )
        # The LDN history: a first dispensing, sometimes an earlier one, refills on boundaries.
        rows.append(ldn(pid, start, strength_mg=rng.choice([0.5, 1.5, 3.0, 4.5, 5.0])))
        if rng.random() < 0.1:
            rows.append(ldn(pid, start - timedelta(days=rng.choice([1, 30, 400]))))
        if rng.random() < 0.1:
            rows.append(ldn(pid, start, dispensing_id=f"A{i:05d}", strength_mg=1.0))
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            rows.append(ldn(pid, start + timedelta(days=rng.choice([1, 30, 90, 200, 364, 365]))))
        if rng.random() < 0.1:  # dependence treatment, not LDN
            rows.append(
                dispensing(
                    pid,
                    start + timedelta(days=rng.choice([-1, 0, 10])),
                    LDN_ATC,
                    strength_mg=50.0,
                    ddd=7.0,
                )
            )
        if rng.random() < 0.05:
            rows.append(
                dispensing(pid, start - timedelta(days=2), LDN_ATC, strength_mg=None, ddd=None)
            )
        if rng.random() < 0.05:
            rows.append(ldn(pid, start - timedelta(days=3), packs=-1.0, ddd=-0.5))
        # Outcome drugs on boundary days, with returns and unknown DDD.
        for _ in range(rng.choice([0, 1, 2, 4, 6])):
            atc = rng.choice(["N02AA01", "N02AX02", "N02AJ06", "M01AE01", "N02BE01", "N05BA01"])
            packs = rng.choice([1.0, 1.0, 2.0, 3.0, -1.0])
            ddd = rng.choice([None, 0.25, 2.5, 7.0, 10.0, 28.75])
            if ddd is not None:
                ddd = packs * ddd
            rows.append(
                dispensing(
                    pid,
                    start + timedelta(days=rng.choice(boundary)),
                    atc,
                    strength_mg=rng.choice([None, 10.0, 50.0]),
                    packs=packs,
                    ddd=ddd,
                    prescriber_id=rng.choice([None, "P1", "P2"]),
                )
            )
    return persons, rows
