"""Time one study run in a fresh process: the session, then cohort + consumption and the whole
run from the study's progress marks. Works with any rxcohort since the first release (it uses
only ``build_session()`` and ``run_study``), so two versions can be compared on one warehouse:

    RXCOHORT_ENGINE=spark .venv/bin/python benchmarks/study_timing.py WH cohorts/x.yaml
    PYTHONPATH=/path/to/old/checkout/src .venv/bin/python benchmarks/study_timing.py WH ...
"""

from __future__ import annotations

import itertools
import sys
import time


def main(warehouse: str, study_file: str) -> None:
    from rxcohort.spark import build_session

    started = time.perf_counter()
    spark = build_session()
    session_s = time.perf_counter() - started
    from rxcohort.pipelines import run_study

    marks: list[tuple[float, str]] = []
    began = time.perf_counter()
    run_study(
        spark,
        study_file,
        warehouse=warehouse,
        as_of=None,
        progress=lambda m: marks.append((time.perf_counter() - began, m)),
    )
    full = time.perf_counter() - began
    cohort = full
    for (_, message), (offset, _) in itertools.pairwise(marks):
        if message.startswith("writing consumption"):
            cohort = offset
            break
    print(f"session {session_s:.1f} s, cohort+consumption {cohort:.1f} s, full run {full:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
