"""Time the refresh of a warehouse: a first full ingest, an unchanged delivery, and a delivery
with one corrected yearly file (incremental, then the same with ``--full``). Each step is a
fresh ``rxcohort`` process, so every time includes the engine's start; the refresh's own JSON
lines give the ingest step alone.

    .venv/bin/rxcohort generate /data/b1m --persons 1000000
    .venv/bin/python benchmarks/refresh_timing.py /data/b1m /data/work [--year 2014] [--drop 1000]

The corrected delivery is a copy of the first (hard links, so no second copy on disk) whose
``dispensings_<year>.csv`` lacks its last ``--drop`` lines. Prints one line per step and the
ratios the issue names (corrected refresh / first ingest, unchanged refresh - engine start).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

RXCOHORT = str(Path(sys.executable).with_name("rxcohort"))


def _run(*args: str) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    done = subprocess.run(
        [RXCOHORT, *args], capture_output=True, text=True, env={**os.environ}, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return seconds, steps


def _corrected(delivery: Path, target: Path, year: int, drop: int) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(delivery, target, copy_function=os.link)
    path = target / "dispensings" / f"dispensings_{year}.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    path.unlink()  # a hard link: write a new file, leave the original alone
    path.write_bytes(b"".join(lines[:-drop]))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"][f"dispensings/dispensings_{year}.csv"] = hashlib.sha256(
        path.read_bytes()
    ).hexdigest()
    (target / "manifest.json").unlink()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("delivery", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--year", type=int, default=2014)
    parser.add_argument("--drop", type=int, default=1000)
    parser.add_argument("--study", default="cohorts/ldn_opioids_2013.yaml")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    wh = args.work / "wh"
    if wh.exists():
        shutil.rmtree(wh)
    load = os.getloadavg()[0]

    engine, _ = _run("sql", "SELECT 1 AS x", "--warehouse", str(args.work))
    first, _ = _run("ingest", str(args.delivery), "--warehouse", str(wh))
    ran, _ = _run(
        "refresh", str(args.delivery), "--studies", args.study, "--warehouse", str(wh), "--json"
    )
    same, same_steps = _run(
        "refresh", str(args.delivery), "--studies", args.study, "--warehouse", str(wh), "--json"
    )
    corrected = _corrected(args.delivery, args.work / "corrected", args.year, args.drop)
    backup = args.work / "wh_before_correction"
    if backup.exists():
        shutil.rmtree(backup)
    shutil.copytree(wh, backup)
    fix, fix_steps = _run(
        "refresh", str(corrected), "--studies", args.study, "--warehouse", str(wh), "--json"
    )
    full, full_steps = _run(
        "refresh", str(corrected), "--studies", args.study, "--warehouse", str(backup),
        "--json", "--full",
    )  # fmt: skip
    ingest_fix = fix_steps[0]["seconds"]
    ingest_full = full_steps[0]["seconds"]
    print(f"load average at start {load:.2f}")
    print(f"engine start (rxcohort sql SELECT 1): {engine:.1f} s")
    print(f"first ingest (full): {first:.1f} s")
    print(f"refresh, unchanged delivery, study run: {ran:.1f} s")
    print(f"refresh, unchanged delivery, study up to date: {same:.1f} s "
          f"({same - engine:.1f} s beyond the engine start; ingest step {same_steps[0]['seconds']} s)")  # fmt: skip
    print(f"refresh, corrected {args.year} file ({args.drop} lines fewer), incremental: {fix:.1f} s "
          f"(ingest step {ingest_fix} s, {fix_steps[0]['details'].get('reclassified')} rows "
          f"classified again; study {fix_steps[1]['seconds']} s)")  # fmt: skip
    print(f"refresh, same correction, --full: {full:.1f} s (ingest step {ingest_full} s)")
    print(f"ratio corrected refresh / first ingest: {fix / first:.2f} "
          f"(ingest steps only: {ingest_fix / first:.2f}; --full: {ingest_full / first:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
