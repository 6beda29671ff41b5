"""The utilisation paper's figures (Raknes & Småbrekke, PDS 2017;26:136) from a warehouse where
`cohorts/ldn_utilisation_2013_2014.yaml` has run, next to the published values.

    python benchmarks/utilisation_figures.py --warehouse WH [--study ldn_utilisation_2013_2014]

Reads the study's Delta tables with delta-rs (no engine): the cohort (every LDN user of
2013-2014), `use_over_time` (the population alive and resident at mid-year), `characteristics`
(sex and age), `dose` (each user's mean daily dose) and `prescriber_summary`. Prints a
Markdown table; the figures are aggregates of the whole cohort, so small counts do not arise.
The cohort size is written as a share of the population only, the way the paper gives it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

PUBLISHED = {
    "users, share of the population": "0.3% (15,297 of about 5.1 million)",
    "female": "74%",
    "median age, years": "52",
    "median daily dose, mg": "3.7",
    "physicians who prescribed LDN": "20%",
    "GPs who prescribed LDN": "71%",
}


def _table(study_dir: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = study_dir / name
    if not (path / "_delta_log").is_dir():
        sys.exit(f"{path} is not a Delta table: run the utilisation study first")
    return DeltaTable(str(path)).to_pandas(columns=columns)


def figures(study_dir: Path) -> dict[str, str]:
    """The paper's figures as this warehouse gives them."""
    n_users = len(_table(study_dir, "cohort", ["person_id"]))
    use = _table(study_dir, "use_over_time")
    years = use[
        (use.period_type == "year") & (use.sex == "all") & (use.age_band == "all")
        & (use.drug == use.drug.iloc[0])
    ]  # fmt: skip
    population = float(years["n_population"].mean())  # the two mid-years' population
    chars = _table(study_dir, "characteristics")
    whole = chars[chars.exposure_group == "all"].set_index(["variable", "level"])
    dose = _table(study_dir, "dose", ["mean_daily_dose_mg"])["mean_daily_dose_mg"].dropna()
    shares = _table(study_dir, "prescriber_summary").set_index(["unit", "category", "level"])
    physicians = shares.loc[("prescribers", "profession", "physician"), "share"]
    gps = shares.loc[("prescribers", "specialty", "general_practice"), "share"]
    return {
        "users, share of the population": f"{100 * n_users / population:.2f}%",
        "female": f"{whole.loc[('sex', 'female'), 'percent']:.0f}%",
        "median age, years": f"{whole.loc[('age', ''), 'median']:.0f}",
        "median daily dose, mg": f"{dose.median():.1f}",
        "physicians who prescribed LDN": f"{100 * physicians:.0f}%",
        "GPs who prescribed LDN": f"{100 * gps:.0f}%",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True, type=Path)
    parser.add_argument("--study", default="ldn_utilisation_2013_2014")
    args = parser.parse_args(argv)
    got = figures(args.warehouse / "studies" / args.study)
    print("| figure | published | this warehouse |")
    print("|---|---|---|")
    for name, value in got.items():
        print(f"| {name} | {PUBLISHED[name]} | {value} |")


if __name__ == "__main__":
    main()
