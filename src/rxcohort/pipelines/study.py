"""``rxcohort run``: read pinned silver tables, build the study's tables, write them, record the run.

The steps, each a function below:

1. load the study file (or, with ``as_of``, the definition stored with that run);
2. pin the input tables to Delta versions (the latest, or the past run's);
3. read them, check the deliveries cover the study's days, select the study's dispensings;
4. build cohort, attrition and consumption (:func:`rxcohort.cohort.build.build_study_tables`);
5. write them to ``<warehouse>/studies/<study_id>/``;
6. run the analyses on the written tables (:func:`run_analyses`);
7. append the run to the ``runs`` table - also when a step failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from rxcohort import io
from rxcohort.cohort.build import (
    StudyTables,
    build_study_tables,
    index_dispensings_for,
    required_data_range,
    select_dispensings_for,
)
from rxcohort.errors import ConfigError, RxCohortError, TableNotFoundError
from rxcohort.lock import warehouse_lock
from rxcohort.log import get_logger
from rxcohort.pipelines.runs import (
    STATUS_SUCCEEDED,
    RunRecord,
    append_run,
    find_run,
    git_commit,
    new_run_id,
    utc_now,
)
from rxcohort.pipelines.snapshot import complete_load
from rxcohort.study.loader import StudySource, load_study_source, parse_study
from rxcohort.study.models import DrugRule, ReimbursementRule, Study
from rxcohort.transforms.dispensings import select_cohort_dispensings

log = get_logger("study")

Progress = Callable[[str], None]

DISPENSINGS = "silver/dispensings"
PERSONS = "silver/persons"
PRESCRIBERS = "silver/prescribers"
DELIVERIES = "silver/deliveries"
REQUIRED_INPUTS = (DISPENSINGS, PERSONS)
OPTIONAL_INPUTS = (PRESCRIBERS, DELIVERIES)
OUTPUT_TABLES = ("cohort", "attrition", "consumption")


@dataclass(frozen=True)
class AnalysisInputs:
    """What the analyses (statistics, persistence) get: the written tables and pinned inputs."""

    study: Study
    run_id: str
    study_dir: Path
    cohort: DataFrame
    attrition: DataFrame
    consumption: DataFrame
    n_persons: int  # the cohort's size (the last attrition step)
    dispensings: DataFrame  # the study's dispensings of (at least) every cohort person
    # Cohort persons' silver dispensings meeting the index-drug rule, from the index period's
    # start to the end of data.
    index_dispensings: DataFrame
    persons: DataFrame
    prescribers: DataFrame | None
    # Every silver dispensing (use over calendar time counts the whole population's use).
    silver_dispensings: DataFrame
    # The deliveries' period; without a deliveries table, the first and last dispensing date.
    data_period: tuple[date, date] | None


@dataclass(frozen=True)
class AnalysisOutcome:
    summary_rows: list[tuple[str, str]] = field(default_factory=list)
    table_versions: dict[str, int] = field(default_factory=dict)


@dataclass
class StudyRun:
    """What ``rxcohort run`` prints: counts only, never a person-level value."""

    study_id: str
    run_id: str
    title: str
    study_dir: Path
    as_of: str | None
    input_versions: dict[str, int]
    output_versions: dict[str, int]
    attrition: list[tuple[int, str, int, int]]
    group_sizes: list[tuple[str, int]]
    analysis: AnalysisOutcome

    @property
    def n_persons(self) -> int:
        return self.attrition[-1][2] if self.attrition else 0

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = [("study", self.title), ("run id", self.run_id)]
        if self.as_of:
            rows.append(("rebuilt as of run", self.as_of))
        rows.append(
            ("inputs", ", ".join(f"{name} v{v}" for name, v in sorted(self.input_versions.items())))
        )
        for step, criterion, n_persons, n_excluded in self.attrition:
            rows.append((f"{step}. {criterion}", f"{n_persons} (-{n_excluded})"))
        for label, n in self.group_sizes:
            rows.append((f"exposure group {label}", str(n)))
        rows.extend(self.analysis.summary_rows)
        rows.append(("tables", f"{self.study_dir}: {', '.join(sorted(self.output_versions))}"))
        return rows


def run_study(
    spark: SparkSession,
    study_file: str | Path,
    *,
    warehouse: str | Path,
    as_of: str | None = None,
    progress: Progress | None = None,
    lock_wait: float = 0.0,
    strict: bool = False,
) -> StudyRun:
    """Build and write the study's tables; record the run. See the module docstring.

    The warehouse's write lock is held throughout (waited for up to ``lock_wait`` seconds).
    An ATC code or prefix of the study that matches no dispensing in the warehouse is a
    warning, or with ``strict`` an error (:func:`check_codes_present`).
    """
    with warehouse_lock(warehouse, command="run", wait_seconds=lock_wait, say=progress):
        return _run_study(
            spark, study_file, warehouse=warehouse, as_of=as_of, progress=progress, strict=strict
        )


def _run_study(
    spark: SparkSession,
    study_file: str | Path,
    *,
    warehouse: str | Path,
    as_of: str | None,
    progress: Progress | None,
    strict: bool,
) -> StudyRun:
    say = progress or (lambda message: None)
    warehouse = Path(warehouse)
    source = load_study_source(study_file)
    study_dir = warehouse / "studies" / source.study.study_id
    runs_path = study_dir / "runs"

    pinned: dict[str, int] | None = None
    if as_of is not None:
        source, pinned = _past_definition(spark, source, runs_path, as_of, say)
    study = source.study
    started = utc_now()
    record = RunRecord(
        run_id=new_run_id(started),
        study_id=study.study_id,
        definition_sha256=source.sha256,
        definition_yaml=source.text,
        started_at=started,
        as_of_run_id=as_of,
        git_commit=git_commit(),
    )
    log.info("run %s of study %s started", record.run_id, study.study_id)
    try:
        attrition, group_sizes, analysis = _build_and_analyse(
            spark, warehouse, study, study_dir, record, pinned, strict=strict, say=say
        )
        record.status = STATUS_SUCCEEDED
    except Exception as exc:
        record.error = _error_text(exc)
        raise
    finally:
        record.finished_at = utc_now()
        _record_run(spark, runs_path, record)

    report = _write_report(spark, warehouse, study, record, say)
    if report is not None:
        analysis.summary_rows.append(("report", str(report)))
    log.info(
        "run %s of study %s succeeded: %d persons",
        record.run_id,
        study.study_id,
        record.n_persons or 0,
    )
    return StudyRun(
        study_id=study.study_id,
        run_id=record.run_id,
        title=study.title,
        study_dir=study_dir,
        as_of=as_of,
        input_versions=record.input_versions,
        output_versions=record.output_versions,
        attrition=attrition,
        group_sizes=group_sizes,
        analysis=analysis,
    )


def _build_and_analyse(
    spark: SparkSession,
    warehouse: Path,
    study: Study,
    study_dir: Path,
    record: RunRecord,
    pinned: dict[str, int] | None,
    *,
    strict: bool,
    say: Progress,
) -> tuple[list[tuple[int, str, int, int]], list[tuple[str, int]], AnalysisOutcome]:
    """Pin and read the inputs, check them, build and write the cohort, attrition and
    consumption, then the analyses from what was written. Fills in the record's versions and
    size; returns the attrition rows, the group sizes and the analyses' outcome."""
    record.input_versions = pin_inputs(warehouse, pinned)
    say("reading " + ", ".join(f"{k} v{v}" for k, v in sorted(record.input_versions.items())))
    inputs = read_inputs(spark, warehouse, record.input_versions)
    check_codes_present(study, inputs[DISPENSINGS], strict=strict)
    data_period = check_coverage(study, inputs.get(DELIVERIES)) or _dispensing_period(
        inputs[DISPENSINGS]
    )

    say("building the cohort")
    tables = build_study_tables(
        study,
        dispensings=select_dispensings_for(study, inputs[DISPENSINGS]),
        persons=inputs[PERSONS],
    )
    record.output_versions = write_outputs(tables, study_dir, run_id=record.run_id, say=say)
    written = {
        name: io.read_table(spark, study_dir / name, version=version)
        for name, version in record.output_versions.items()
    }
    attrition = sorted(
        (r["step"], r["criterion"], r["n_persons"], r["n_excluded"])
        for r in written["attrition"].collect()
    )
    record.n_persons = attrition[-1][2]
    # Without a data period persistence is skipped; the study's last day only bounds the read.
    data_end = data_period[1] if data_period else required_data_range(study)[1]
    index_dispensings = select_cohort_dispensings(
        index_dispensings_for(study, inputs[DISPENSINGS], date_to=data_end), written["cohort"]
    )
    analysis = run_analyses(
        spark,
        AnalysisInputs(
            study=study,
            run_id=record.run_id,
            study_dir=study_dir,
            cohort=written["cohort"],
            attrition=written["attrition"],
            consumption=written["consumption"],
            n_persons=record.n_persons,
            dispensings=tables.dispensings,
            index_dispensings=index_dispensings,
            persons=inputs[PERSONS],
            prescribers=inputs.get(PRESCRIBERS),
            silver_dispensings=inputs[DISPENSINGS],
            data_period=data_period,
        ),
        progress=say,
    )
    record.output_versions.update(analysis.table_versions)
    return attrition, _group_sizes(study, written["cohort"]), analysis


def run_analyses(
    spark: SparkSession, inputs: AnalysisInputs, *, progress: Progress
) -> AnalysisOutcome:
    """The analyses that read the built tables: outcome statistics, persistence, Table 1
    (``characteristics``), then the utilisation tables (use over calendar time when the study asks for it; who prescribes the
    index drug when the warehouse has prescribers).

    Each writes its own tables under ``inputs.study_dir`` through :mod:`rxcohort.io`; their
    Delta versions go into the run record.
    """

    ledger = _AnalysisLedger(
        commit_info={"rxcohort.run_id": inputs.run_id, "rxcohort.study_id": inputs.study.study_id},
        progress=progress,
    )
    if inputs.n_persons == 0:
        ledger.skipped("analyses", "the cohort is empty")
    else:
        _run_outcome_analyses(spark, inputs, ledger)
        _run_characterisation(inputs, ledger)
        _run_utilisation(inputs, ledger)
    return AnalysisOutcome(summary_rows=ledger.rows, table_versions=ledger.versions)


@dataclass
class _AnalysisLedger:
    """What the analyses have written so far: table versions and the summary's rows."""

    commit_info: dict[str, str]
    progress: Progress
    versions: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)

    def wrote(self, label: str, written: Mapping[str, int]) -> None:
        self.versions.update(written)
        self.rows.append((label, ", ".join(sorted(written))))

    def skipped(self, label: str, reason: str) -> None:
        self.rows.append((label, f"skipped: {reason}"))


def _run_characterisation(inputs: AnalysisInputs, ledger: _AnalysisLedger) -> None:
    from rxcohort.pipelines.analyses import run_characteristics

    ledger.progress("characterising the cohort (Table 1)")
    written = run_characteristics(
        study=inputs.study,
        cohort=inputs.cohort,
        consumption=inputs.consumption,
        dispensings=inputs.silver_dispensings,
        study_dir=inputs.study_dir,
        commit_info=ledger.commit_info,
    )
    ledger.wrote("characterisation", written)


def _run_utilisation(inputs: AnalysisInputs, ledger: _AnalysisLedger) -> None:
    from rxcohort.pipelines.analyses import run_prescriber_summary, run_use_over_time

    study = inputs.study
    if study.use_over_time is not None:
        ledger.progress("counting use over calendar time")
        if inputs.data_period is None:
            ledger.skipped("use over time", "the data period is unknown")
        else:
            written = run_use_over_time(
                study=study,
                dispensings=inputs.silver_dispensings,
                persons=inputs.persons,
                data_start=inputs.data_period[0],
                study_dir=inputs.study_dir,
                commit_info=ledger.commit_info,
            )
            ledger.wrote("use over time", written)
    if inputs.prescribers is not None:
        ledger.progress("summarising prescribers")
        written = run_prescriber_summary(
            study=study,
            dispensings=inputs.silver_dispensings,
            prescribers=inputs.prescribers,
            study_dir=inputs.study_dir,
            commit_info=ledger.commit_info,
        )
        ledger.wrote("prescribers", written)


def _run_outcome_analyses(
    spark: SparkSession, inputs: AnalysisInputs, ledger: _AnalysisLedger
) -> None:
    from rxcohort.pipelines.analyses import run_persistence, run_statistics

    study = inputs.study

    ledger.progress("computing outcome statistics")
    trajectory = study.statistics.trajectory
    written = run_statistics(
        spark,
        cohort=inputs.cohort,
        consumption=inputs.consumption,
        dispensings=inputs.dispensings,
        study_dir=inputs.study_dir,
        exposure_groups=[g.label for g in study.exposure_groups],
        drug_groups=study.drug_groups,
        contrasts=[tuple(c) for c in study.statistics.contrasts]
        if study.statistics.contrasts
        else None,
        responder_threshold=study.statistics.responder_threshold,
        months_before=trajectory.months_before,
        months_after=trajectory.months_after,
        its_lag_months=list(trajectory.lag_months),
        commit_info=ledger.commit_info,
    )
    ledger.wrote("statistics", written)

    if study.persistence.enabled:
        ledger.progress("analysing persistence")
        data_end = inputs.data_period[1] if inputs.data_period else None
        if data_end is None:
            ledger.skipped("persistence", "the end of data is unknown")
        else:
            written = run_persistence(
                cohort=inputs.cohort,
                index_dispensings=inputs.index_dispensings,
                prescribers=inputs.prescribers,
                consumption=inputs.consumption,
                study_dir=inputs.study_dir,
                baseline_drug_group=_baseline_drug_group(study),
                baseline_window=_baseline_window(study),
                grace_days=study.persistence.grace_days,
                data_end=data_end,
                commit_info=ledger.commit_info,
            )
            ledger.wrote("persistence", written)


def _write_report(
    spark: SparkSession, warehouse: Path, study: Study, record: RunRecord, say: Progress
) -> Path | None:
    """The HTML report. Its tables are already committed, so a report failure fails nothing."""
    from rxcohort.report import build_report

    say("writing the report")
    try:
        return build_report(
            spark, warehouse=warehouse, study_id=study.study_id, study=study, run=record
        )
    except Exception as exc:  # the run's tables stand; say why the page is missing
        log.warning("report not written: %s", _error_text(exc))
        return None


def _baseline_drug_group(study: Study) -> str:
    """The drug group whose baseline use the persistence models adjust for.

    The prior-use inclusion rule's group when there is one (opioids in the reference study),
    else the first drug group.
    """
    for rule in study.inclusion:
        group = getattr(rule, "drug_group", None)
        if getattr(rule, "kind", None) == "drug" and group in study.drug_groups:
            return group
    return next(iter(study.drug_groups))


def _baseline_window(study: Study) -> str:
    for rule in study.inclusion:
        if getattr(rule, "kind", None) == "drug" and getattr(rule, "window", None) in study.windows:
            return rule.window
    return "pre" if "pre" in study.windows else next(iter(study.windows))


# -- the steps --------------------------------------------------------------------------------


def pin_inputs(warehouse: Path, pinned: dict[str, int] | None = None) -> dict[str, int]:
    """Delta version of each input table: ``pinned`` (a past run's), else the version the last
    complete load committed (:mod:`rxcohort.pipelines.snapshot`; the latest for a table no load record
    names)."""
    versions: dict[str, int] = {}
    load_id, loaded = (None, {}) if pinned is not None else complete_load(warehouse)
    for name in (*REQUIRED_INPUTS, *OPTIONAL_INPUTS):
        if pinned is not None:
            if name in pinned:
                versions[name] = pinned[name]
            elif name in REQUIRED_INPUTS:
                raise RxCohortError(f"the past run recorded no version of {name}")
            continue
        version = io.table_version(warehouse / name)
        if name in loaded and version is not None and version > loaded[name]:
            log.warning(
                "%s v%d is from a load that did not finish; reading v%d of load %s",
                name,
                version,
                loaded[name],
                load_id,
            )
            version = loaded[name]
        if version is not None:
            versions[name] = version
        elif name in REQUIRED_INPUTS:
            raise TableNotFoundError(
                f"no {name} table in {warehouse}; load a delivery first (rxcohort ingest)"
            )
    return versions


def read_inputs(
    spark: SparkSession, warehouse: Path, versions: dict[str, int]
) -> dict[str, DataFrame]:
    return {
        name: io.read_table(spark, warehouse / name, version=version)
        for name, version in versions.items()
    }


def study_codes(study: Study) -> list[str]:
    """Every ATC code or prefix the study names: index drug, drug groups, rules."""
    codes = [*study.index_drug.atc, *(p for ps in study.drug_groups.values() for p in ps)]
    for _, rule in study.rules:
        if isinstance(rule, DrugRule | ReimbursementRule):
            codes.extend(study.rule_atc(rule) or ())
    return sorted(set(codes))


def check_codes_present(study: Study, dispensings: DataFrame, *, strict: bool = False) -> list[str]:
    """The study's ATC codes and prefixes that match no dispensing in ``dispensings`` (one
    pass over its ``atc_code`` column), each named in a warning - or, with ``strict``, in an
    error: a well-formed code that exists nowhere (``N02X``) would otherwise count as nobody's
    use and pass silently."""
    codes = study_codes(study)
    if not codes:
        return []
    row = dispensings.agg(
        *[
            F.max(F.col("atc_code").startswith(code).cast("int")).alias(f"c{i}")
            for i, code in enumerate(codes)
        ]
    ).first()
    missing = [code for i, code in enumerate(codes) if not (row and row[f"c{i}"])]
    if missing:
        message = (
            f"study {study.study_id}: ATC code(s) {', '.join(missing)} match no dispensing in "
            "the warehouse (a typing error, or a code the registry does not use)"
        )
        if strict:
            raise ConfigError(message)
        log.warning("%s", message)
    return missing


def check_coverage(study: Study, deliveries: DataFrame | None) -> tuple[date, date] | None:
    """The deliveries' period; an error when it does not hold every day the study looks at.

    A window that runs past the data would count missing dispensings as zero use. Without a
    deliveries table the period is unknown and not checked.
    """
    if deliveries is None or not {"period_start", "period_end"} <= set(deliveries.columns):
        log.warning("no delivery period recorded: the study's date range is not checked")
        return None
    row = deliveries.agg(
        F.min("period_start").alias("start"), F.max("period_end").alias("end")
    ).first()
    if row is None or row["start"] is None or row["end"] is None:
        return None
    needed_from, needed_to = required_data_range(study)
    start, end = row["start"], row["end"]
    if needed_from < start or needed_to > end:
        raise RxCohortError(
            f"study {study.study_id} needs dispensings from {needed_from} to {needed_to}, but the "
            f"deliveries in the warehouse cover {start} to {end}"
        )
    return (start, end)


def write_outputs(
    tables: StudyTables, study_dir: Path, *, run_id: str, say: Progress
) -> dict[str, int]:
    versions = {}
    for name in OUTPUT_TABLES:
        say(f"writing {name}")
        versions[name] = io.write_table(
            getattr(tables, name),
            study_dir / name,
            mode="overwrite",
            commit_info={"rxcohort.run_id": run_id, "rxcohort.study_id": study_dir.name},
        )
    return versions


# -- helpers ----------------------------------------------------------------------------------


def _past_definition(
    spark: SparkSession, current: StudySource, runs_path: Path, run_id: str, say: Progress
) -> tuple[StudySource, dict[str, int]]:
    past = find_run(spark, runs_path, run_id)
    source = parse_study(
        past.definition_yaml, study_id=current.study.study_id, source=f"run {run_id}"
    )
    if past.definition_sha256 != current.sha256:
        say(f"the study file has changed since run {run_id}; rebuilding with that run's definition")
    return source, past.input_versions


def _dispensing_period(dispensings: DataFrame) -> tuple[date, date] | None:
    row = dispensings.agg(
        F.min("dispense_date").alias("start"), F.max("dispense_date").alias("end")
    ).first()
    if row is None or row["start"] is None:
        return None
    return (row["start"], row["end"])


def _group_sizes(study: Study, cohort: DataFrame) -> list[tuple[str, int]]:
    counts = {
        r["exposure_group"]: r["n"]
        for r in cohort.groupBy("exposure_group").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    return [(g.label, int(counts.get(g.label, 0))) for g in study.exposure_groups]


def _record_run(spark: SparkSession, runs_path: Path, record: RunRecord) -> None:
    try:
        append_run(spark, runs_path, record)
    except Exception as exc:
        log.error("could not record run %s: %s", record.run_id, type(exc).__name__)
        if record.status == STATUS_SUCCEEDED:
            raise


def _error_text(exc: Exception) -> str:
    # Our errors are written to be person-free; others (Spark, Python) may quote data values.
    if isinstance(exc, RxCohortError):
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500]}"
    return type(exc).__name__
