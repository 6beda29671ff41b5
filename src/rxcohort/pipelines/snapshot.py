"""What a reader reads: the warehouse as the last complete load and each study's last
succeeded run left it.

A load commits its tables one by one and ends with ``bronze/files``, whose commit records the
version of every table the load committed (``rxcohort.versions`` in the commit's metadata). A
run commits its tables one by one and ends with its row in the study's ``runs`` table, which
records the versions it wrote (``output_versions``). A load or run killed half-way leaves
newer versions of some tables that no such record names; readers - a study's inputs,
``export``, the report, ``rxcohort sql`` and ``tables`` - read the recorded versions, so they
see one complete load and one complete run, never a mix. The next writer replaces the
unfinished versions by committing over them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxcohort import io
from rxcohort.log import get_logger
from rxcohort.pipelines.runs import STATUS_SUCCEEDED

log = get_logger("snapshot")

LOAD_VERSIONS = "rxcohort.versions"  # key of the bronze/files commit metadata
SUITES_RECORD = "rxcohort.suites"  # and of the digests of the suites the load ran
FINGERPRINTS_RECORD = "rxcohort.fingerprints"  # and of its tables' parts (silver/changes)
LOAD_RECORD = "bronze/files"


@dataclass(frozen=True)
class Snapshot:
    """Table (path relative to the warehouse, e.g. ``silver/dispensings``) -> version to read;
    and which recorded load or run each pin comes from."""

    versions: dict[str, int] = field(default_factory=dict)
    load_id: str | None = None
    runs: dict[str, str] = field(default_factory=dict)  # study id -> run id

    def version(self, table: str) -> int | None:
        return self.versions.get(table)


def complete_load(warehouse: str | Path) -> tuple[str | None, dict[str, int]]:
    """The last complete load's id and the versions it committed (``{}`` before any load, or
    for a warehouse whose loads recorded none)."""
    entry = complete_load_record(warehouse)
    if entry is None:
        return None, {}
    versions = {str(k): int(v) for k, v in json.loads(entry["info"][LOAD_VERSIONS]).items()}
    versions[LOAD_RECORD] = int(entry["version"])
    return entry["info"].get("rxcohort.load_id"), versions


def complete_load_record(warehouse: str | Path) -> dict[str, Any] | None:
    """The ``bronze/files`` history entry (version, info) of the last complete load."""
    path = Path(warehouse) / LOAD_RECORD
    if not io.table_exists(path):
        return None
    for entry in io.table_history(path):
        if entry["info"].get(LOAD_VERSIONS):
            return entry
    return None


def last_succeeded_run(study_dir: str | Path) -> dict[str, Any] | None:
    """The latest succeeded run of a study (by start) as a dict - run_id, started_at,
    definition_sha256, input_versions, output_versions - or None when none succeeded."""
    runs = Path(study_dir) / "runs"
    if not io.table_exists(runs):
        return None
    columns = ["run_id", "status", "started_at", "definition_sha256"]
    rows = io.read_rows(runs, [*columns, "input_versions", "output_versions"])
    done = [r for r in rows if r["status"] == STATUS_SUCCEEDED and r["output_versions"]]
    if not done:
        return None
    last = max(done, key=lambda r: (r["started_at"], r["run_id"]))
    for key in ("input_versions", "output_versions"):
        last[key] = {str(k): int(v) for k, v in (last[key] or {}).items()}
    return last


def succeeded_run(study_dir: str | Path) -> tuple[str | None, dict[str, int]]:
    """The latest succeeded run of a study (by start) and the versions of the tables it wrote,
    relative to the study directory; ``(None, {})`` when none succeeded."""
    last = last_succeeded_run(study_dir)
    if last is None:
        return None, {}
    return str(last["run_id"]), last["output_versions"]


def warehouse_snapshot(warehouse: str | Path) -> Snapshot:
    """The versions every reader of ``warehouse`` should read (tables not named: their latest)."""
    root = Path(warehouse)
    load_id, versions = complete_load(root)
    runs: dict[str, str] = {}
    studies = root / "studies"
    if studies.is_dir():
        for study_dir in sorted(p for p in studies.iterdir() if p.is_dir()):
            run_id, written = succeeded_run(study_dir)
            if run_id is None:
                continue
            runs[study_dir.name] = run_id
            for name, version in written.items():
                versions[f"studies/{study_dir.name}/{name}"] = version
    return Snapshot(versions=versions, load_id=load_id, runs=runs)


def pinned(snapshot: Snapshot, tables: Mapping[str, Path], root: Path) -> dict[str, int | None]:
    """For ``tables`` (name -> path under ``root``): the version to read, None for the latest."""
    out: dict[str, int | None] = {}
    for name, path in tables.items():
        try:
            relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            relative = None
        out[name] = snapshot.version(relative) if relative else None
    return out
