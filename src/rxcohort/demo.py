"""``rxcohort demo``: generate a synthetic delivery, ingest it, run the reference study."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession
from rich.console import Console

from rxcohort.config import app_settings, project_root
from rxcohort.errors import RxCohortError


def reference_study_path(study: str) -> Path:
    root = project_root()
    candidates = [root / "cohorts" / f"{study}.yaml"] if root else []
    candidates.append(Path.cwd() / "cohorts" / f"{study}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RxCohortError(
        f"cannot find the study file cohorts/{study}.yaml (run from the repository)"
    )


def run_demo(
    spark: SparkSession,
    *,
    warehouse: Path,
    persons: int | None,
    progress: Callable[[str], None] | None,
    console: Console,
) -> Path:
    """Run the whole chain on the embedded default and return the study's directory."""
    from rxcohort.generate import generate_delivery
    from rxcohort.pipelines import ingest_delivery, run_study

    say = progress or (lambda _m: None)
    settings = app_settings().demo
    n_persons = persons or settings.persons
    delivery = Path(warehouse).resolve().parent / "demo_delivery"
    wanted = {"persons": n_persons, "seed": settings.seed, "ldn_rate": settings.ldn_rate}
    if _delivery_matches(delivery, wanted):
        say(f"reusing the synthetic delivery in {delivery}")
    else:
        say(f"generating a synthetic delivery of {n_persons:,} persons in {delivery}")
        started = time.monotonic()
        generate_delivery(
            spark,
            delivery,
            persons=n_persons,
            seed=settings.seed,
            start=date(2011, 1, 1),
            end=date(2015, 12, 31),
            defects=settings.defects,
            gzip=False,
            ldn_rate=settings.ldn_rate,
        )
        say(f"generated in {time.monotonic() - started:.0f} s")
    say(f"ingesting into {warehouse}")
    ingested = ingest_delivery(spark, delivery, warehouse=Path(warehouse), progress=progress)
    _print_rows(console, "Ingest", ingested.summary_rows())
    study_file = reference_study_path(settings.study)
    say(f"running {study_file.name}")
    result = run_study(spark, study_file, warehouse=Path(warehouse), as_of=None, progress=progress)
    _print_rows(console, f"Study {result.study_id}", result.summary_rows())
    study_dir = Path(warehouse) / "studies" / result.study_id
    report = study_dir / "report.html"
    if report.is_file():
        console.print(f"\nReport: [bold]{report.resolve()}[/bold]")
    console.print(
        f'Tables: {study_dir.resolve()}  (try: rxcohort sql "SELECT * FROM {result.study_id}.group_results")'
    )
    return study_dir


def _delivery_matches(delivery: Path, wanted: dict) -> bool:
    truth = delivery / "truth.json"
    if not (delivery / "manifest.json").is_file() or not truth.is_file():
        return False
    try:
        recorded = json.loads(truth.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    params = recorded.get("arguments", {})
    return all(params.get(k) == v for k, v in wanted.items())


def _print_rows(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    from rxcohort.terminal import print_summary

    print_summary(console, title, rows)
