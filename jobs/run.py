"""spark-submit entry point for ``rxcohort run``.

    spark-submit jobs/run.py STUDY.yaml --warehouse WH [--as-of RUN_ID]

Thin on purpose: the work is :func:`rxcohort.pipelines.run_study`, the same function the
``rxcohort run`` command calls. The study file is validated before Spark starts. Exit status 0
on success; 2 for an invalid study file, 4 when another writer holds the warehouse, 1 for any
other problem, with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from rxcohort.spark import add_engine_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("study_file", help="a study file (cohorts/*.yaml)")
    parser.add_argument("--warehouse", default=None, help="warehouse directory")
    add_engine_arguments(parser)
    parser.add_argument("--as-of", default=None, help="rebuild a past run from its input versions")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop when an ATC code of the study matches no dispensing",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for another writer of the warehouse (default: fail at once)",
    )
    args = parser.parse_args(argv)

    from rxcohort.config import app_settings
    from rxcohort.errors import RxCohortError
    from rxcohort.study import load_study

    try:
        load_study(args.study_file)  # fail on a wrong study file before starting Spark
    except RxCohortError as exc:
        print(f"rxcohort run: {exc}", file=sys.stderr)
        return exc.exit_code

    from rxcohort.pipelines import run_study
    from rxcohort.spark import build_session

    warehouse = args.warehouse or app_settings().warehouse
    spark = build_session(engine=args.engine, remote=args.remote, app_name="rxcohort-run")
    try:
        result = run_study(
            spark,
            args.study_file,
            warehouse=warehouse,
            as_of=args.as_of,
            progress=lambda message: print(f"... {message}", file=sys.stderr),
            lock_wait=args.wait,
            strict=args.strict,
        )
    except RxCohortError as exc:
        print(f"rxcohort run: {exc}", file=sys.stderr)
        return exc.exit_code
    for key, value in result.summary_rows():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
