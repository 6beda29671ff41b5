"""``generate_delivery``: write a synthetic NorPD delivery (CONTRACT §1) and its truth.json.

The Spark jobs stage the generated rows as Parquet, sort them, and write text parts; the
driver then concatenates the parts of each file in order behind a header. Sorting on a total
key and hashing every random draw make the output byte-identical for the same arguments,
whatever the number of cores or partitions.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import rxcohort
from rxcohort.errors import ParameterError, RxCohortError
from rxcohort.generate import catalogue as cat
from rxcohort.generate.dispensings import generate_events
from rxcohort.generate.lines import (
    DEFECT_NAMES,
    dispensing_lines,
    header,
    persons_lines,
    prescribers_lines,
)
from rxcohort.generate.population import (
    MAX_PERSONS,
    PopulationPlan,
    PrescriberPlan,
    generate_population,
    generate_prescribers,
    plan_population,
    plan_prescribers,
)
from rxcohort.log import get_logger
from rxcohort.schemas import DISPENSINGS_COLUMNS, PERSONS_COLUMNS, PRESCRIBERS_COLUMNS

log = get_logger("generate")

REGISTRY = "NorPD (synthetic)"
STAGING = ".generate-staging"
_OUR_NAMES = {"persons", "prescribers", "dispensings", "manifest.json", "truth.json", STAGING}
_PREFIX = re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$")
_GZIP_LEVEL = 6

DEFECT_NOTES = {
    "duplicate": "the line is delivered twice, byte for byte (count = extra lines)",
    "return": "packs made negative with no matching dispensing (an orphan correction)",
    "malformed_atc": "atc_code truncated to 5 characters, given an 8th digit, or split by '-'",
    "impossible_date": "dispense_date as YYYY-02-30, YYYY-13-DD, or 100 years off (still in "
    "the file of its true year)",
    "unknown_person": "person_id of no person in persons.csv",
    "missing_ddd": "ddd_per_pack empty on a product that has one",
    "whitespace": "a space before/after person_id, atc_code, product_name or packs",
}


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative to the delivery directory
    rows: int  # data rows (header excluded)
    bytes: int
    sha256: str


@dataclass
class GenerateResult:
    """What was written: files with row counts and checksums, headline counts, timing."""

    out_dir: Path
    files: list[FileInfo]
    persons: int
    prescribers: int
    dispensings: int
    ldn_users: int
    defects: dict[str, int]
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    truth: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def summary_rows(self) -> list[tuple[str, str]]:
        return [
            ("files", str(len(self.files))),
            ("persons", f"{self.persons:,}"),
            ("prescribers", f"{self.prescribers:,}"),
            ("dispensing rows", f"{self.dispensings:,}"),
            ("LDN users 2013-2014", f"{self.ldn_users:,}"),
            ("defects injected", f"{sum(self.defects.values()):,}"),
            ("size", _human_bytes(self.total_bytes)),
            ("seconds", f"{self.seconds:.1f}"),
        ]


def generate_delivery(
    spark: SparkSession,
    out_dir: str | Path,
    *,
    persons: int,
    seed: int = 2013,
    start: date = date(2011, 1, 1),
    end: date = date(2015, 12, 31),
    defects: float = 0.0,
    gzip: bool = False,
    ldn_rate: float = 0.003,
    effects: Mapping[str, Mapping[str, float]] | None = None,
) -> GenerateResult:
    """Write a synthetic NorPD-like delivery into ``out_dir`` and return what was written.

    ``ldn_rate`` is the share of persons who collect LDN in 2013-2014 (0.003 as in Norway;
    raise it to enrich small populations). ``effects`` maps ATC prefixes to the relative change
    (-0.9..0) of each exposure group's use in the year after the first LDN dispensing (default
    :data:`catalogue.DEFAULT_EFFECTS`). truth.json beside the files records all of it.
    """
    began = time.monotonic()
    effects = _check_arguments(
        persons=persons,
        seed=seed,
        start=start,
        end=end,
        defects=defects,
        ldn_rate=ldn_rate,
        effects=effects,
    )
    out = Path(out_dir)
    _prepare_out_dir(out)
    staging = out / STAGING
    timer = _Timer()
    try:
        plan = plan_population(persons=persons, seed=seed, start=start, end=end, ldn_rate=ldn_rate)
        presc_plan = plan_prescribers(persons)
        log.info("generating %s persons, %s prescribers", f"{persons:,}", f"{presc_plan.total:,}")
        people, staged, counts = _stage_rows(
            spark, staging, plan, presc_plan, effects=effects, defects=defects, timer=timer
        )
        log.info("generated %s dispensing rows; writing files", f"{counts['rows']:,}")
        files = _write_files(spark, staging, out, plan, presc_plan, people, staged, gzip, timer)
        written = sum(f.rows for f in files if f.path.startswith("dispensings/"))
        if written != counts["rows"] or files[0].rows != persons:
            raise RuntimeError("generated and written row counts differ; delivery is incomplete")
        ldn = _ldn_counts(people)
        truth = _truth(plan, presc_plan, effects, defects, gzip, counts, ldn)
        _write_json(out / "truth.json", truth)
        _write_json(out / "manifest.json", _manifest(start, end, files))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.monotonic() - began
    log.info("delivery written in %.1f s", seconds)
    return GenerateResult(
        out_dir=out,
        files=files,
        persons=persons,
        prescribers=presc_plan.total,
        dispensings=counts["rows"],
        ldn_users=ldn["users_2013_2014"],
        defects=dict(counts["defects"]),
        seconds=seconds,
        step_seconds=dict(timer.seconds),
        truth=truth,
    )


def _stage_rows(
    spark: SparkSession,
    staging: Path,
    plan: PopulationPlan,
    presc_plan: PrescriberPlan,
    *,
    effects: Mapping[str, Mapping[str, float]],
    defects: float,
    timer: _Timer,
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """The population and the dispensing lines, written to the staging area once and read
    back (every file and count is made from the same rows): persons, lines, line counts."""
    with timer("population"):
        generate_population(spark, plan=plan, prescribers=presc_plan).write.parquet(
            str(staging / "persons.parquet")
        )
    people = spark.read.parquet(str(staging / "persons.parquet"))
    with timer("dispensings"):
        events = generate_events(spark, people, plan=plan, prescribers=presc_plan, effects=effects)
        lines = dispensing_lines(events, seed=plan.seed, persons=plan.persons, defect_rate=defects)
        lines.write.parquet(str(staging / "dispensings.parquet"))
        staged = spark.read.parquet(str(staging / "dispensings.parquet"))
        counts = _line_counts(staged)
    return people, staged, counts


def _write_files(
    spark: SparkSession,
    staging: Path,
    out: Path,
    plan: PopulationPlan,
    presc_plan: PrescriberPlan,
    people: DataFrame,
    staged: DataFrame,
    gzip: bool,
    timer: _Timer,
) -> list[FileInfo]:
    """persons, prescribers and one dispensings file per year, in the contract's layout."""
    suffix = ".csv.gz" if gzip else ".csv"
    files: list[FileInfo] = []
    with timer("write persons and prescribers"):
        files.append(
            _write_sorted(
                persons_lines(people, seed=plan.seed),
                staging / "persons_txt",
                out,
                f"persons{suffix}",
                header(PERSONS_COLUMNS),
                gzip,
            )
        )
        files.append(
            _write_sorted(
                prescribers_lines(generate_prescribers(spark, plan=presc_plan, seed=plan.seed)),
                staging / "prescribers_txt",
                out,
                f"prescribers{suffix}",
                header(PRESCRIBERS_COLUMNS),
                gzip,
            )
        )
    with timer("write dispensings"):
        files.extend(
            _write_dispensings(staged, staging / "dispensings_txt", out, plan, gzip, suffix)
        )
    return files


# --------------------------------------------------------------------------------------------
# Arguments and the output directory
# --------------------------------------------------------------------------------------------


def _check_arguments(
    *,
    persons: int,
    seed: int,
    start: date,
    end: date,
    defects: float,
    ldn_rate: float,
    effects: Mapping[str, Mapping[str, float]] | None,
) -> dict[str, dict[str, float]]:
    if not 100 <= persons <= MAX_PERSONS:
        raise ParameterError(f"--persons must be between 100 and {MAX_PERSONS:,}, not {persons}")
    if seed < 0:
        raise ParameterError(f"--seed must be 0 or more, not {seed}")
    if end < start:
        raise ParameterError("--end must not be before --start")
    if start.year < 1990 or end.year > 2100:
        raise RxCohortError("the period must lie within 1990-2100")
    if not 0.0 <= defects <= 0.5:
        raise RxCohortError(f"--defects must be between 0 and 0.5, not {defects}")
    if not 0.0 <= ldn_rate <= 0.2:
        raise RxCohortError(f"--ldn-rate must be between 0 and 0.2, not {ldn_rate}")
    source = cat.DEFAULT_EFFECTS if effects is None else effects
    checked: dict[str, dict[str, float]] = {}
    for prefix, by_group in source.items():
        if not _PREFIX.match(prefix):
            raise RxCohortError(f"effects: {prefix!r} is not an ATC code or prefix")
        unknown = set(by_group) - set(cat.EXPOSURE_GROUPS)
        if unknown:
            raise RxCohortError(
                f"effects[{prefix}]: unknown exposure group(s) {sorted(unknown)}; "
                f"use {list(cat.EXPOSURE_GROUPS)}"
            )
        values = {g: float(by_group.get(g, 0.0)) for g in cat.EXPOSURE_GROUPS}
        for g, v in values.items():
            if not -0.9 <= v <= 0.0:
                raise RxCohortError(
                    f"effects[{prefix}][{g}] must be a relative change between -0.9 and 0, not {v}"
                )
        checked[prefix] = values
    return checked


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RxCohortError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = list(out.iterdir())
    foreign = [
        e.name
        for e in entries
        if e.name.split(".")[0] not in _OUR_NAMES and e.name not in _OUR_NAMES
    ]
    if foreign:
        raise RxCohortError(
            f"{out} holds files that are not from a generated delivery ({len(foreign)} entries); "
            "choose an empty or new directory"
        )
    for e in entries:
        if e.is_dir():
            shutil.rmtree(e)
        else:
            e.unlink()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class _Timer:
    """Times named steps and logs each one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - began, 1)
        log.info("%s: %.1f s", name, self.seconds[name])


def _write_sorted(
    lines: DataFrame, parts_dir: Path, out: Path, rel: str, head: str, gzip: bool
) -> FileInfo:
    lines.orderBy("sort_key", "line").select("line").write.text(str(parts_dir))
    return _concatenate(text_parts(parts_dir), out, rel, head, gzip)


def _write_dispensings(
    staged: DataFrame,
    parts_dir: Path,
    out: Path,
    plan: PopulationPlan,
    gzip: bool,
    suffix: str,
) -> list[FileInfo]:
    # A global sort on a total key, then one directory per year: within a year directory the
    # part files hold consecutive key ranges, so concatenating them by part number keeps order.
    (
        staged.orderBy("year", "day", "dispensing_id", "line")
        .select("year", "line")
        .write.partitionBy("year")
        .text(str(parts_dir))
    )
    return [
        _concatenate(
            text_parts(parts_dir / f"year={year}"),
            out,
            f"dispensings/dispensings_{year}{suffix}",
            header(DISPENSINGS_COLUMNS),
            gzip,
        )
        for year in range(plan.start.year, plan.end.year + 1)
    ]


def text_parts(directory: Path) -> list[Path]:
    """The data files an engine's text writer left in ``directory``, in the order it wrote them.

    Each engine names them its own way: Spark ``part-00000-<uuid>-c000.txt``, Sail
    ``<id>_0.txt``; both number them in the order of the written partitions.
    """
    if not directory.is_dir():
        return []

    def number(path: Path) -> int:
        spark = re.match(r"part-(\d+)", path.name)
        sail = re.search(r"_(\d+)\.[a-z]+$", path.name)
        match = spark or sail
        return int(match.group(1)) if match else 0

    files = [
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(".crc")
    ]
    return sorted(files, key=lambda p: (number(p), p.name))


def _concatenate(parts: list[Path], out: Path, rel: str, head: str, gzip: bool) -> FileInfo:
    """Header plus the parts in order into ``out/rel``; data rows counted on the way."""
    dest = out / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(dest, "wb") as raw:
        sink: BinaryIO = (
            gzip_module.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_GZIP_LEVEL
            )
            if gzip
            else raw
        )
        try:
            sink.write((head + "\n").encode("utf-8"))
            for part in parts:
                with open(part, "rb") as src:
                    for block in iter(lambda src=src: src.read(1 << 22), b""):
                        rows += block.count(b"\n")
                        sink.write(block)
        finally:
            if gzip:
                sink.close()
    return FileInfo(rel, rows, dest.stat().st_size, sha256_of(dest))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _manifest(start: date, end: date, files: list[FileInfo]) -> dict[str, Any]:
    return {
        "registry": REGISTRY,
        # Deliveries are extracted a while after the period closes; fixed so runs are identical.
        "extract_date": (end + timedelta(days=90)).isoformat(),
        "period": [start.isoformat(), end.isoformat()],
        "files": {f.path: f.sha256 for f in sorted(files, key=lambda f: f.path)},
    }


# --------------------------------------------------------------------------------------------
# Counts for truth.json (aggregates only: never a person-level value)
# --------------------------------------------------------------------------------------------


def _line_counts(staged: DataFrame) -> dict[str, Any]:
    rows = (
        staged.groupBy("year", "defect", "copy", (F.col("packs_n") < 0).alias("negative"))
        .count()
        .collect()
    )
    by_year: dict[int, int] = {}
    by_defect = dict.fromkeys(DEFECT_NAMES, 0)
    genuine_returns = 0
    total = 0
    for r in rows:
        n = int(r["count"])
        total += n
        by_year[int(r["year"])] = by_year.get(int(r["year"]), 0) + n
        kind = r["defect"]
        if kind == "duplicate":
            if r["copy"] == 1:
                by_defect[kind] += n
        elif kind is not None:
            by_defect[kind] += n
        if r["negative"] and kind != "return" and r["copy"] == 0:
            genuine_returns += n
    clean = total - by_defect["duplicate"]
    return {
        "rows": total,
        "events": clean,
        "by_year": by_year,
        "defects": by_defect,
        "genuine_returns": genuine_returns,
    }


def _ldn_counts(people: DataFrame) -> dict[str, Any]:
    row = people.agg(
        F.count(F.col("ldn_start")).alias("users"),
        F.sum(F.when(F.year(F.date_from_unix_date("ldn_start")) == 2013, 1).otherwise(0)).alias(
            "y2013"
        ),
        *[
            F.sum(
                F.when(
                    (F.year(F.date_from_unix_date("ldn_start")) == 2013)
                    & (F.col("ldn_class") == i + 1),
                    1,
                ).otherwise(0)
            ).alias(g)
            for i, g in enumerate(cat.EXPOSURE_GROUPS)
        ],
        F.sum(F.when(F.col("ldn_opioid_type") == 1, 1).otherwise(0)).alias("op_regular"),
        F.sum(F.when(F.col("ldn_opioid_type") == 2, 1).otherwise(0)).alias("op_flares"),
        F.sum(F.col("ldn_early_user").cast("int")).alias("early"),
        F.sum(F.col("naltrexone_user").cast("int")).alias("naltrexone"),
        F.sum(F.col("born_in_period").cast("int")).alias("born"),
        F.count(F.col("death_day")).alias("deaths"),
        F.count(F.col("emigration_day")).alias("emigrations"),
    ).collect()[0]
    users = int(row["users"] or 0)
    y2013 = int(row["y2013"] or 0)
    return {
        "users_2013_2014": users,
        "starters_2013": y2013,
        "starters_2014": users - y2013,
        "planned_groups_of_2013_starters": {g: int(row[g] or 0) for g in cat.EXPOSURE_GROUPS},
        "users_with_regular_extra_opioids": int(row["op_regular"] or 0),
        "users_with_opioid_flares": int(row["op_flares"] or 0),
        "early_users_before_2013": int(row["early"] or 0),
        "naltrexone_50mg_users": int(row["naltrexone"] or 0),
        "_population": {
            "born_in_period": int(row["born"] or 0),
            "deaths": int(row["deaths"] or 0),
            "emigrations": int(row["emigrations"] or 0),
        },
    }


def _truth(
    plan: PopulationPlan,
    presc: PrescriberPlan,
    effects: Mapping[str, Mapping[str, float]],
    defects: float,
    gzip: bool,
    counts: dict[str, Any],
    ldn: dict[str, Any],
) -> dict[str, Any]:
    population = ldn.pop("_population")
    events = counts["events"]
    return {
        "generator": {"name": "rxcohort.generate", "version": rxcohort.__version__},
        "arguments": {
            "persons": plan.persons,
            "seed": plan.seed,
            "start": plan.start.isoformat(),
            "end": plan.end.isoformat(),
            "defects": defects,
            "gzip": gzip,
            "ldn_rate": plan.ldn_rate,
        },
        "effects": {
            "relative_change": {k: dict(v) for k, v in effects.items()},
            "ramp_days": list(cat.EFFECT_RAMP_DAYS),
            "definition": (
                "relative change of the expected use (DDD and dispensings) by ATC prefix in the "
                "365 days from the first LDN dispensing, by the exposure group the person's LDN "
                "fills put them in; it ramps up linearly over a person's ramp days (uniform in "
                "ramp_days) and stays at its full level afterwards; groups and prefixes not "
                "listed: no change"
            ),
        },
        "calibration_targets": {
            "ldn_users_share_of_persons": plan.ldn_rate,
            "ldn_female_share": 0.74,
            "ldn_median_age": 52,
            "ldn_median_daily_dose_mg": 3.7,
            "ldn_start_in_2013_share": round(
                sum(cat.LDN_START_MONTHS[:12]) / sum(cat.LDN_START_MONTHS), 4
            ),
            "exposure_group_shares_2013": dict(
                zip(cat.EXPOSURE_GROUPS, cat.LDN_CLASS_SHARES, strict=True)
            ),
            "prior_opioid_share": 0.25,
            "prior_opioid_ddd_per_year": [80, 90],
            "physicians_prescribing_ldn_share": 0.20,
            "gps_prescribing_ldn_share": 0.71,
        },
        "population": {"persons": plan.persons, **population},
        "prescribers": {
            "total": presc.total,
            "physicians": presc.physicians,
            "by_pool": {p.name: p.count for p in presc.pools},
            "ldn_willing_gps": presc.ldn_willing_gps,
            "ldn_willing_other_physicians": presc.ldn_willing_others,
        },
        "ldn": ldn,
        "dispensings": {
            "rows": counts["rows"],
            "rows_by_year": {str(y): n for y, n in sorted(counts["by_year"].items())},
            "genuine_returns": counts["genuine_returns"],
            "genuine_return_rate": cat.GENUINE_RETURN_RATE,
            "genuine_returns_note": (
                "returns of a real dispensing (negative packs, 1-14 days later, same product) "
                "are part of every delivery, also with --defects 0"
            ),
        },
        "defects": {
            "rate": defects,
            "events": events,
            "by_kind": counts["defects"],
            "kind_weights": dict(cat.DEFECT_KINDS),
            "notes": DEFECT_NOTES,
        },
    }


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GB"
