"""Scale benchmark: the reference study at NorPD sizes against DuckDB and a bare Spark scan.

For each population size: generate a delivery (cached), ingest it into a fresh warehouse, then
time, each in its own process (a cold JVM, as a user's command gets):

* ``scan``   - a bare Spark scan of silver/dispensings: the columns the study reads, rows of the
  study's ATC prefixes, a checksum over them to force the scan (the floor for any Spark study);
* ``study``  - ``run_study`` on the reference study; "cohort" is the time until cohort, attrition
  and consumption are written (from the run's progress messages), "full" adds statistics,
  persistence and the report;
* ``duckdb`` - the same study as plain DuckDB SQL over the same Parquet files
  (``reference_duckdb.py``), whose attrition and group results must equal the study's;
* ``duckdb_ingest`` - the ingest's typing, classification, duplicate and return rules as plain
  DuckDB SQL on the same delivery (``ingest_duckdb.py``), whose clean / quarantined / duplicate
  counts must equal the warehouse's.

``--engine`` (sail, spark or remote) picks the engine of the rxcohort stages; each engine gets
its own warehouse. Peak memory is the largest summed RSS of the stage's process tree (Python
driver, with the embedded engine inside it, or driver + JVM). See benchmarks/README.md.

    RXCOHORT_ENV=local .venv/bin/python benchmarks/run.py --persons 100000 --engine sail
    .venv/bin/python benchmarks/run.py --delivery /data/norpd_1m --engine spark
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import operator
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_STUDY = ROOT / "cohorts" / "ldn_opioids_2013.yaml"
RESULT_TAG = "BENCH_RESULT "
STAGES = ("generate", "ingest", "scan", "study", "duckdb", "duckdb_ingest")
REL_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# Memory of a process tree (psutil when installed, else /proc)


def _tree_rss_psutil(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def _tree_rss_proc(pid: int) -> int:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces; the fields after its closing parenthesis do not.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(parents.get(current, []))
        try:
            with open(f"/proc/{current}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


try:
    import psutil  # noqa: F401

    tree_rss = _tree_rss_psutil
except ImportError:  # not a dependency of rxcohort; /proc is enough on Linux
    tree_rss = _tree_rss_proc


# --------------------------------------------------------------------------------------------
# Parent side: run one stage in a child process and watch it


@dataclass
class StageRun:
    stage: str
    wall_s: float
    peak_rss: int
    load: float  # mean 1-minute load average while the stage ran
    result: dict[str, Any]
    log: Path


def run_stage(stage: str, args: list[str], *, log: Path, env: dict[str, str]) -> StageRun:
    """Run ``run.py _worker STAGE ARGS`` and return its timings, peak memory and result."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", stage, *args]
    began = time.monotonic()
    peak, loads = 0, []
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            loads.append(os.getloadavg()[0])
            time.sleep(0.25)
    wall = time.monotonic() - began
    text = log.read_text(errors="replace")
    results = [line for line in text.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not results:
        tail = "\n".join(text.splitlines()[-25:])
        raise RuntimeError(f"stage {stage} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return StageRun(
        stage=stage,
        wall_s=wall,
        peak_rss=peak,
        load=sum(loads) / len(loads) if loads else os.getloadavg()[0],
        result=json.loads(results[-1][len(RESULT_TAG) :]),
        log=log,
    )


# --------------------------------------------------------------------------------------------
# Worker side: one stage, timings measured inside the process, one JSON line out


class Marks:
    """Progress messages with their offsets from the start of the timed call."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.items: list[tuple[float, str]] = []

    def __call__(self, message: str) -> None:
        self.items.append((time.perf_counter() - self.start, message))
        print(f"[{self.items[-1][0]:8.1f} s] {message}", file=sys.stderr, flush=True)


def _session(**options: Any) -> tuple[Any, float]:
    from rxcohort.spark import build_session

    began = time.perf_counter()
    spark = build_session(app_name="rxcohort-benchmark", **options)
    return spark, time.perf_counter() - began


def worker_generate(ns: argparse.Namespace) -> dict[str, Any]:
    from rxcohort.generate import SAIL_CONF, generate_delivery

    spark, session_s = _session(sail_conf=SAIL_CONF)
    began = time.perf_counter()
    result = generate_delivery(
        spark, ns.delivery, persons=ns.persons, seed=ns.seed, ldn_rate=ns.ldn_rate
    )
    return {
        "session_s": session_s,
        "seconds": time.perf_counter() - began,
        "rows": result.dispensings,
        "bytes": sum(f.bytes for f in result.files),
        "steps": dict(result.step_seconds),
    }


def worker_ingest(ns: argparse.Namespace) -> dict[str, Any]:
    from rxcohort.pipelines import ingest_delivery

    spark, session_s = _session()
    marks = Marks()
    ingest_delivery(spark, ns.delivery, warehouse=ns.warehouse, progress=marks)
    return {
        "session_s": session_s,
        "seconds": time.perf_counter() - marks.start,
        "marks": marks.items,
    }


def worker_scan(ns: argparse.Namespace) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from rxcohort import io
    from rxcohort.study import load_study
    from rxcohort.transforms.dispensings import STUDY_DISPENSING_COLUMNS

    study = load_study(ns.study)
    prefixes = sorted(
        {*study.index_drug.atc, *(p for ps in study.drug_groups.values() for p in ps)}
    )
    spark, session_s = _session()
    began = time.perf_counter()
    columns = list(STUDY_DISPENSING_COLUMNS)
    row = (
        io.read_table(spark, Path(ns.warehouse) / "silver" / "dispensings")
        .select(*columns)
        # Plain StartsWith, OR-ed: Spark pushes it down to the Parquet reader.
        .where(reduce(operator.or_, (F.col("atc_code").startswith(p) for p in prefixes)))
        # A hash of every selected column, so that none of them can be pruned from the scan.
        .agg(F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(*columns) % 1000).alias("checksum"))
        .first()
    )
    return {
        "session_s": session_s,
        "seconds": time.perf_counter() - began,
        "rows_kept": int(row["n"]),
        "prefixes": prefixes,
    }


def worker_study(ns: argparse.Namespace) -> dict[str, Any]:
    from rxcohort.pipelines import run_study

    spark, session_s = _session()
    marks = Marks()
    run = run_study(spark, ns.study, warehouse=ns.warehouse, progress=marks)
    full = time.perf_counter() - marks.start
    return {
        "session_s": session_s,
        "full_s": full,
        "cohort_s": cohort_seconds(marks.items, full),
        "phases": study_phases(marks.items, full),
        "n_persons": run.n_persons,
    }


def cohort_seconds(marks: list[tuple[float, str]], full: float) -> float:
    """Seconds until cohort, attrition and consumption are written: the next message after
    "writing consumption" (the statistics or the report starting), or the end of the run."""
    seen = False
    for offset, message in marks:
        if seen:
            return offset
        seen = message.startswith("writing consumption")
    return full


def study_phases(marks: list[tuple[float, str]], full: float) -> dict[str, float]:
    """Seconds spent after each progress message, until the next (or the end)."""
    out: dict[str, float] = {}
    bounds = [*marks, (full, "")]
    for (offset, message), (following, _) in itertools.pairwise(bounds):
        key = message.split(",")[0][:40]
        out[key] = out.get(key, 0.0) + following - offset
    return out


def worker_duckdb(ns: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from reference_duckdb import run_reference

    result = run_reference(ns.warehouse)
    return {
        "seconds": result.seconds,
        "attrition": result.attrition,
        "group_results": result.group_results,
        "steps": result.step_seconds,
    }


def worker_duckdb_ingest(ns: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from ingest_duckdb import ingest

    out = Path(ns.warehouse).parent / "duckdb_ingest"
    shutil.rmtree(out, ignore_errors=True)
    try:
        return ingest(Path(ns.delivery), out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


WORKERS = {
    "generate": worker_generate,
    "ingest": worker_ingest,
    "scan": worker_scan,
    "study": worker_study,
    "duckdb": worker_duckdb,
    "duckdb_ingest": worker_duckdb_ingest,
}


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py _worker")
    parser.add_argument("stage", choices=sorted(WORKERS))
    parser.add_argument("--delivery")
    parser.add_argument("--warehouse")
    parser.add_argument("--study", default=str(DEFAULT_STUDY))
    parser.add_argument("--persons", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--ldn-rate", type=float)
    ns = parser.parse_args(argv)
    result = WORKERS[ns.stage](ns)
    print(RESULT_TAG + json.dumps(result, default=str), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# One scale: data, stages, checks


@dataclass
class Scale:
    persons: int
    seed: int
    ldn_rate: float
    delivery: Path
    home: Path  # the scale's directory under the data dir: warehouse, logs, timings
    external: bool = False  # a delivery given with --delivery, not generated here

    @property
    def key(self) -> str:
        return f"p{self.persons}_s{self.seed}_r{self.ldn_rate:g}"


@dataclass
class ScaleResult:
    scale: Scale
    rows: int = 0
    stages: dict[str, StageRun | None] = field(default_factory=dict)
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)


def delivery_arguments(delivery: Path) -> dict[str, Any] | None:
    """The generator's arguments from truth.json, or None when the delivery is incomplete."""
    truth, manifest = delivery / "truth.json", delivery / "manifest.json"
    if not (truth.is_file() and manifest.is_file()):
        return None
    return json.loads(truth.read_text())["arguments"]


def table_rows(path: Path) -> int:
    """Rows in a Delta table's current snapshot, from the file statistics in its log."""
    import pyarrow as pa
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True))
    return int(sum(actions.column("num_records").to_pylist()))


def ensure_delivery(scale: Scale, *, env: dict[str, str], regenerate: bool) -> StageRun | None:
    args = delivery_arguments(scale.delivery)
    wanted = {"persons": scale.persons, "seed": scale.seed, "ldn_rate": scale.ldn_rate}
    if args is not None and not regenerate:
        if any(args.get(k) != v for k, v in wanted.items()):
            raise SystemExit(f"{scale.delivery} was generated with {args}, not {wanted}")
        return None
    if scale.external:
        raise SystemExit(f"{scale.delivery} is not a complete delivery (no truth.json)")
    shutil.rmtree(scale.delivery, ignore_errors=True)
    scale.delivery.parent.mkdir(parents=True, exist_ok=True)
    run = run_stage(
        "generate",
        [
            "--delivery", str(scale.delivery), "--persons", str(scale.persons),
            "--seed", str(scale.seed), "--ldn-rate", str(scale.ldn_rate),
        ],
        log=scale.home / "logs" / "generate.log",
        env=env,
    )  # fmt: skip
    (scale.home / "generate.json").write_text(json.dumps(_stage_json(run), indent=2))
    return run


def run_scale(scale: Scale, ns: argparse.Namespace, env: dict[str, str]) -> ScaleResult:
    out = ScaleResult(scale=scale)
    logs = scale.home / "logs"
    say(f"== {scale.persons:,} persons ({scale.key}): delivery {scale.delivery}")
    generated = ensure_delivery(scale, env=env, regenerate=ns.regenerate)
    out.stages["generate"] = generated
    if generated is None and (scale.home / "generate.json").is_file():
        out.cached["generate"] = json.loads((scale.home / "generate.json").read_text())

    warehouse = scale.home / f"warehouse_{ns.engine}"
    ingest_json = scale.home / f"ingest_{ns.engine}.json"
    if ns.reuse_warehouse and ingest_json.is_file() and (warehouse / "silver").is_dir():
        out.cached["ingest"] = json.loads(ingest_json.read_text())
        say("   ingest: reusing the warehouse of an earlier run")
    else:
        shutil.rmtree(warehouse, ignore_errors=True)
        ingest_json.unlink(missing_ok=True)
        run = run_stage(
            "ingest",
            ["--delivery", str(scale.delivery), "--warehouse", str(warehouse)],
            log=logs / "ingest.log",
            env=env,
        )
        ingest_json.write_text(json.dumps(_stage_json(run), indent=2))
        out.stages["ingest"] = run
        say(f"   ingest: {run.wall_s:.1f} s, peak {_mb(run.peak_rss)} MB, load {run.load:.1f}")
    out.rows = table_rows(warehouse / "silver" / "dispensings")
    if "duckdb_ingest" not in ns.skip:
        run = run_stage(
            "duckdb_ingest",
            ["--delivery", str(scale.delivery), "--warehouse", str(warehouse)],
            log=logs / "duckdb_ingest.log",
            env=env,
        )
        out.stages["duckdb_ingest"] = run
        out.mismatches += compare_ingest(warehouse, run.result)
        say(f"   duckdb ingest: {_describe(run)}")

    for stage in ("scan", "study", "duckdb"):
        if stage in ns.skip:
            continue
        best: StageRun | None = None
        for i in range(ns.repeat):
            run = run_stage(
                stage,
                ["--warehouse", str(warehouse), "--study", str(ns.study)],
                log=logs / f"{stage}{'' if ns.repeat == 1 else f'_{i}'}.log",
                env=env,
            )
            say(f"   {stage}: {_describe(run)}")
            if best is None or _timed(run) < _timed(best):
                best = run
        out.stages[stage] = best

    study, duck = out.stages.get("study"), out.stages.get("duckdb")
    if study is not None and duck is not None:
        out.mismatches = compare_results(warehouse, ns.study, duck.result)
    return out


def _timed(run: StageRun) -> float:
    """The number a stage is compared by: in-process seconds (cohort part for the study)."""
    return float(run.result.get("cohort_s", run.result.get("seconds", run.wall_s)))


def _describe(run: StageRun) -> str:
    r = run.result
    if run.stage == "study":
        text = f"cohort+consumption {r['cohort_s']:.1f} s, full run {r['full_s']:.1f} s"
    else:
        text = f"{r['seconds']:.1f} s"
    if "session_s" in r:
        text += f" (+{r['session_s']:.1f} s session start)"
    return f"{text}; process {run.wall_s:.1f} s, peak {_mb(run.peak_rss)} MB, load {run.load:.1f}"


# --------------------------------------------------------------------------------------------
# Same answer from both implementations


def compare_results(warehouse: Path, study_file: Path, duck: dict[str, Any]) -> list[str]:
    """Differences between the study's Delta tables and DuckDB's results (empty: they agree).

    Counts must be equal, means equal to ``REL_TOL`` relative. Only counts and group means
    are named, never a person.
    """
    from deltalake import DeltaTable

    study_dir = warehouse / "studies" / Path(study_file).stem
    problems: list[str] = []
    attrition = DeltaTable(str(study_dir / "attrition")).to_pandas().sort_values("step")
    study_counts = [int(n) for n in attrition["n_persons"]]
    if study_counts != duck["attrition"]:
        problems.append(f"attrition: study {study_counts} vs duckdb {duck['attrition']}")
    cohort_rows = table_rows(study_dir / "cohort")
    if cohort_rows != duck["attrition"][-1]:
        problems.append(f"cohort: study {cohort_rows} rows vs duckdb {duck['attrition'][-1]}")

    groups = DeltaTable(str(study_dir / "group_results")).to_pandas()
    ours = {
        (r["exposure_group"], r["drug_group"]): r
        for r in groups.to_dict("records")
        if int(r["n_persons"]) > 0  # the study keeps empty groups as rows of zero persons
    }
    theirs = {(r["exposure_group"], r["drug_group"]): r for r in duck["group_results"]}
    for key in sorted(set(ours) ^ set(theirs)):
        where = "study" if key in ours else "duckdb"
        problems.append(f"{key[0]} x {key[1]}: only in {where}")
    for key in sorted(set(ours) & set(theirs)):
        a, b = ours[key], theirs[key]
        for column in ("n_persons", "users_pre", "users_post"):
            if int(a[column]) != int(b[column]):
                problems.append(f"{key[0]} x {key[1]} {column}: {a[column]} vs {b[column]}")
        for column in ("mean_ddd_pre", "mean_ddd_post", "mean_diff"):
            x, y = float(a[column]), float(b[column])
            if not math.isclose(x, y, rel_tol=REL_TOL, abs_tol=1e-9):
                problems.append(f"{key[0]} x {key[1]} {column}: {x!r} vs {y!r}")
    return problems


# --------------------------------------------------------------------------------------------
# Reporting


def compare_ingest(warehouse: Path, duck: dict[str, Any]) -> list[str]:
    """Differences between the warehouse's silver / quarantine and DuckDB's ingest counts."""
    from deltalake import DeltaTable

    problems = []
    for table, counts in duck["tables"].items():
        silver = table_rows(warehouse / "silver" / table)
        quarantine_path = warehouse / "quarantine" / table
        reasons: dict[str, int] = {}
        if (quarantine_path / "_delta_log").is_dir():
            column = DeltaTable(str(quarantine_path)).to_pyarrow_table(columns=["reason"])
            for reason in column["reason"].to_pylist():
                reasons[reason] = reasons.get(reason, 0) + 1
        if silver != counts["clean"]:
            problems.append(f"{table}: silver {silver} rows, DuckDB clean {counts['clean']}")
        theirs = {k: v for k, v in counts.get("reasons", {}).items() if v}
        if reasons != theirs:
            problems.append(f"{table}: quarantine reasons {reasons}, DuckDB {theirs}")
    return problems


def _mb(n: int) -> int:
    return round(n / 2**20)


def _stage_json(run: StageRun) -> dict[str, Any]:
    return {
        "stage": run.stage,
        "wall_s": run.wall_s,
        "peak_rss": run.peak_rss,
        "load": run.load,
        "result": run.result,
    }


def say(message: str) -> None:
    print(message, flush=True)


def _stage_value(res: ScaleResult, stage: str) -> dict[str, Any] | None:
    run = res.stages.get(stage)
    if run is not None:
        return _stage_json(run)
    return res.cached.get(stage)


def summary_line(res: ScaleResult) -> str:
    def secs(stage: str, key: str = "seconds") -> str:
        value = _stage_value(res, stage)
        if value is None:
            return "-"
        number = (
            value["result"].get(key, value["wall_s"]) if stage != "generate" else value["wall_s"]
        )
        return f"{number:.1f}" + ("*" if stage in res.cached else "")

    scan, study, duck = (res.stages.get(s) for s in ("scan", "study", "duckdb"))
    parts = [
        f"persons={res.scale.persons:,}",
        f"rows={res.rows:,}",
        f"generate={secs('generate')}s",
        f"ingest={secs('ingest')}s",
        f"scan={secs('scan')}s",
        f"study={secs('study', 'cohort_s')}s",
        f"full_run={secs('study', 'full_s')}s",
        f"duckdb={secs('duckdb')}s",
        f"duckdb_ingest={secs('duckdb_ingest')}s",
    ]
    if study is not None and duck is not None:
        parts.append(f"study/duckdb={study.result['cohort_s'] / duck.result['seconds']:.1f}x")
    if study is not None and scan is not None:
        parts.append(f"study/scan={study.result['cohort_s'] / scan.result['seconds']:.1f}x")
    peaks = [f"{s} {_mb(r.peak_rss)}" for s, r in res.stages.items() if r is not None]
    parts.append("peak_MB[" + ", ".join(peaks) + "]")
    loads = [r.load for r in res.stages.values() if r is not None]
    if loads:
        parts.append(f"load={min(loads):.1f}-{max(loads):.1f}")
    if duck is not None and study is not None:
        parts.append("results=MATCH" if not res.mismatches else "results=MISMATCH")
    return " ".join(parts)


def markdown_table(results: list[ScaleResult]) -> str:
    head = (
        "| persons | silver rows | ingest s | DuckDB ingest s | ingest/DuckDB | scan s "
        "| study s (cohort+consumption) | full run s | DuckDB s | study/DuckDB | study/scan "
        "| peak MB ingest / study / DuckDB | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for res in results:
        get = {s: _stage_value(res, s) for s in STAGES}

        def num(stage: str, key: str = "seconds", *, get: dict = get) -> float | None:
            value = get.get(stage)
            return None if value is None else float(value["result"].get(key, value["wall_s"]))

        def cell(x: float | None, fmt: str = "{:.1f}") -> str:
            return "-" if x is None else fmt.format(x)

        study, scan, duck = num("study", "cohort_s"), num("scan"), num("duckdb")
        ingest, duck_ingest = num("ingest"), num("duckdb_ingest")
        peaks = " / ".join(
            "-" if get.get(s) is None else str(_mb(get[s]["peak_rss"]))
            for s in ("ingest", "study", "duckdb")
        )
        loads = [v["load"] for v in get.values() if v is not None]
        lines.append(
            f"| {res.scale.persons:,} | {res.rows:,} | {cell(ingest)} | {cell(duck_ingest)} "
            f"| {cell(ingest / duck_ingest if ingest and duck_ingest else None, '{:.1f}x')} "
            f"| {cell(scan)} | {cell(study)} | {cell(num('study', 'full_s'))} | {cell(duck)} "
            f"| {cell(study / duck if study and duck else None, '{:.1f}x')} "
            f"| {cell(study / scan if study and scan else None, '{:.1f}x')} "
            f"| {peaks} | {cell(min(loads) if loads else None)}-{cell(max(loads) if loads else None)} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, action="append", default=[], help="repeatable")
    parser.add_argument(
        "--delivery",
        type=Path,
        action="append",
        default=[],
        help="an existing generated delivery (its truth.json gives persons, seed, ldn_rate)",
    )
    parser.add_argument("--seed", type=int, default=2013)
    parser.add_argument("--ldn-rate", type=float, default=0.003)
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--study", type=Path, default=DEFAULT_STUDY)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of scan/study/duckdb; best kept"
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=["scan", "study", "duckdb", "duckdb_ingest"]
    )
    parser.add_argument(
        "--engine",
        choices=("sail", "spark", "remote"),
        default=os.environ.get("RXCOHORT_ENGINE", "sail"),
        help="engine of the rxcohort stages (default: $RXCOHORT_ENGINE or sail)",
    )
    parser.add_argument("--regenerate", action="store_true", help="ignore a cached delivery")
    parser.add_argument(
        "--reuse-warehouse",
        action="store_true",
        help="skip the ingest when this scale's warehouse was ingested by an earlier run",
    )
    parser.add_argument("--json", type=Path, help="append each scale's results to this file")
    ns = parser.parse_args(argv)
    if not ns.persons and not ns.delivery:
        parser.error("give at least one --persons N or --delivery DIR")

    env = dict(os.environ)
    env.setdefault("RXCOHORT_ENV", "local")
    env["RXCOHORT_ENGINE"] = ns.engine
    scales: list[Scale] = []
    for persons in ns.persons:
        key = f"p{persons}_s{ns.seed}_r{ns.ldn_rate:g}"
        home = ns.data_dir / key
        scales.append(Scale(persons, ns.seed, ns.ldn_rate, home / "delivery", home))
    for delivery in ns.delivery:
        args = delivery_arguments(delivery)
        if args is None:
            parser.error(f"{delivery} is not a complete generated delivery (no truth.json)")
        scale = Scale(args["persons"], args["seed"], args["ldn_rate"], delivery.resolve(), Path())
        scale.home = ns.data_dir / scale.key
        scale.external = True
        scales.append(scale)

    say(
        f"rxcohort benchmark {datetime.now(UTC).isoformat(timespec='seconds')}: "
        f"{os.cpu_count()} cores, {_mb(_total_memory())} MB RAM, "
        f"RXCOHORT_ENV={env['RXCOHORT_ENV']}, engine {ns.engine}, load {os.getloadavg()[0]:.1f}"
    )
    results: list[ScaleResult] = []
    for scale in sorted(scales, key=lambda s: s.persons):
        scale.home.mkdir(parents=True, exist_ok=True)
        res = run_scale(scale, ns, env)
        results.append(res)
        say("   " + summary_line(res))
        for problem in res.mismatches:
            say(f"   !!! MISMATCH study vs DuckDB: {problem}")
        if ns.json:
            record = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "persons": scale.persons,
                "seed": scale.seed,
                "ldn_rate": scale.ldn_rate,
                "rows": res.rows,
                "stages": {s: _stage_value(res, s) for s in STAGES},
                "mismatches": res.mismatches,
            }
            with ns.json.open("a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")

    say("")
    for res in results:
        say(summary_line(res))
    say("")
    say(markdown_table(results))
    if any(res.mismatches for res in results):
        say("\n!!! THE STUDY AND DUCKDB DISAGREE - the timings above do not compare like with like")
        return 1
    return 0


def _total_memory() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    sys.exit(main())
