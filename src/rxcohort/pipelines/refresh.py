"""``rxcohort refresh``: what a scheduler runs when a delivery arrives.

Ingest the delivery (nothing is written when every file is already in the warehouse), then
run each study whose inputs changed since its last succeeded run - the input versions that
run pinned against those of the last complete load, and the study file's checksum against the
one it ran - and skip the others, saying why. One writer lock is held from start to end, so
a refresh and another writer never interleave.

Each step is reported as it ends (:class:`Step`): a line for a person, a JSON object for a
scheduler. The outcome maps to an exit status: 0 everything done or up to date, 5 the quality
gate closed (no study ran), 6 a study failed (the others ran), 4 another writer holds the
warehouse, 1 the delivery cannot be read, 2 a study file or the command line is wrong.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession

from rxcohort.errors import ConfigError, QualityGateError, RxCohortError, StudyFailedError
from rxcohort.lock import warehouse_lock
from rxcohort.log import get_logger
from rxcohort.pipelines.snapshot import last_succeeded_run
from rxcohort.study.loader import StudySource, load_study_source

if TYPE_CHECKING:
    from rxcohort.pipelines.ingest import IngestResult

log = get_logger("refresh")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One step of a refresh: the ingest, or one study."""

    step: str  # "ingest" or "study"
    name: str  # the delivery directory, or the study id
    status: str  # ingest: loaded, unchanged, gate_closed; study: ran, skipped, failed
    reason: str  # why, in words
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        took = f" ({self.seconds:.1f} s)" if self.seconds >= 0.05 else ""
        return f"{self.step} {self.name}: {self.status} - {self.reason}{took}"

    def json(self) -> str:
        return json.dumps({**asdict(self), "seconds": round(self.seconds, 2)}, default=str)


@dataclass
class RefreshResult:
    steps: list[Step] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if any(s.status == "gate_closed" for s in self.steps):
            return QualityGateError.exit_code
        if any(s.status == "failed" for s in self.steps):
            return StudyFailedError.exit_code
        return 0


def study_sources(paths: Sequence[str | Path]) -> list[StudySource]:
    """The study files of ``paths`` (files, or folders of ``*.yaml``), parsed and checked.

    Every file is read before anything starts: one wrong file stops the refresh (exit 2)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                raise ConfigError(f"{path}: no study files (*.yaml) in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such study file or folder")
    sources = [load_study_source(f) for f in dict.fromkeys(files)]
    ids = [s.study.study_id for s in sources]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"two study files for study {', '.join(repeated)}: give one of each")
    return sources


def why_run(warehouse: Path, source: StudySource) -> tuple[bool, str]:
    """Whether the study must run now, and why (or why not)."""
    from rxcohort.pipelines.study import pin_inputs

    last = last_succeeded_run(warehouse / "studies" / source.study.study_id)
    if last is None:
        return True, "no succeeded run yet"
    run = last["run_id"]
    if last["definition_sha256"] != source.sha256:
        return True, f"the study file changed since run {run}"
    current = pin_inputs(warehouse)
    changed = [
        f"{name} v{last['input_versions'].get(name, '-')} -> v{version}"
        for name, version in sorted(current.items())
        if last["input_versions"].get(name) != version
    ]
    if changed:
        return True, "inputs changed since run " + run + ": " + ", ".join(changed)
    return False, f"inputs and study file as in run {run}"


def refresh(
    spark: Callable[[], SparkSession],
    delivery_dir: str | Path,
    *,
    warehouse: str | Path,
    studies: Sequence[StudySource],
    lock_wait: float = 0.0,
    progress: Progress | None = None,
    report: Callable[[Step], None] = lambda step: None,
    full: bool = False,
    verify: bool = False,
) -> RefreshResult:
    """Ingest ``delivery_dir`` into ``warehouse`` and run the ``studies`` whose inputs changed.

    ``spark`` starts the session when first needed (after the lock is held). ``report`` is
    called with every step as it ends. A closed quality gate ends the refresh (no study runs);
    a failed study is reported and the others still run. ``full`` and ``verify`` are the
    ingest's (:func:`rxcohort.pipelines.ingest_delivery`).
    """
    from rxcohort.pipelines import ingest_delivery

    root = Path(warehouse)
    result = RefreshResult()

    def done(step: Step) -> None:
        result.steps.append(step)
        log.info("%s", step.line())
        report(step)

    with warehouse_lock(root, command="refresh", wait_seconds=lock_wait, create=True, say=progress):
        session = spark()
        warming = _warm_study_modules() if studies else None
        try:
            started = time.monotonic()
            try:
                loaded = ingest_delivery(
                    session,
                    delivery_dir,
                    warehouse=root,
                    progress=progress,
                    full=full,
                    verify=verify,
                )
            except QualityGateError as exc:
                done(Step("ingest", str(delivery_dir), "gate_closed", str(exc), _since(started)))
                return result
            done(_ingest_step(loaded, str(delivery_dir), _since(started)))
            for source in studies:  # (a module the thread is importing: the import waits)
                done(_study_step(session, root, source, progress))
        finally:
            if warming is not None:
                warming.join()
    return result


def _warm_study_modules() -> threading.Thread:
    """Import what a study run needs - statistics, survival analysis, the report's plots, a
    few seconds of imports - in a thread of its own while the ingest works on the engine.
    Only a head start: a failed import here is left for the study to meet."""

    def work() -> None:
        with contextlib.suppress(Exception):
            import lifelines  # noqa: F401

            import rxcohort.pipelines.analyses
            import rxcohort.pipelines.study
            import rxcohort.report.build  # noqa: F401

    thread = threading.Thread(target=work, name="rxcohort-warm-imports", daemon=True)
    thread.start()
    return thread


def _ingest_step(loaded: IngestResult, delivery: str, seconds: float) -> Step:
    """The ingest's line: what the load changed, or that nothing did."""
    if not loaded.changed:
        return Step(
            "ingest",
            delivery,
            "unchanged",
            "every file is already in the warehouse as delivered",
            seconds,
        )
    n_changed = sum(1 for _, _, changed in loaded.files if changed)
    return Step(
        "ingest",
        delivery,
        "loaded",
        f"load {loaded.load_id}: {n_changed} of {len(loaded.files)} files new or "
        f"changed; {_classified(loaded.reclassified)}; rows changed in "
        f"{'; '.join(loaded.changed_parts) or 'nothing'}",
        seconds,
        {
            "load_id": loaded.load_id,
            "files_changed": n_changed,
            "changed": list(loaded.changed_parts),
            "reclassified": loaded.reclassified,
        },
    )


def _study_step(
    session: SparkSession, root: Path, source: StudySource, progress: Progress | None
) -> Step:
    """Run the study when its file or inputs changed since its last run, else skip it; a
    failure is the step's outcome (the refresh goes on with the next study)."""
    from rxcohort.pipelines import run_study

    study_id = source.study.study_id
    needed, reason = why_run(root, source)
    if not needed:
        return Step("study", study_id, "skipped", reason)
    started = time.monotonic()
    try:
        ran = run_study(session, source.source, warehouse=root, progress=progress)
    except Exception as exc:  # one failed study does not stop the others
        what = str(exc) if isinstance(exc, RxCohortError) else _internal(exc)
        return Step("study", study_id, "failed", f"{reason}; {what}", _since(started))
    return Step(
        "study",
        study_id,
        "ran",
        f"{reason}; run {ran.run_id}",
        _since(started),
        {"run_id": ran.run_id},
    )


def _classified(rows: int | None) -> str:
    if rows is None:
        return "every dispensing row classified"
    return f"{rows:,} dispensing rows classified again"


def _internal(exc: Exception) -> str:
    log.debug("study failed", exc_info=exc)
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}: {first}"


def _since(started: float) -> float:
    return time.monotonic() - started
