"""spark-submit entry point for ``rxcohort refresh``.

    spark-submit jobs/refresh.py DELIVERY_DIR --warehouse WH [--studies PATH ...] [--json]

Thin on purpose: the work is :func:`rxcohort.pipelines.refresh.refresh`, the same function the
``rxcohort refresh`` command calls. The delivery's layout and every study file are checked
before Spark starts. One line per step on stdout (one JSON object with ``--json``). Exit
status 0 done or up to date, 5 the quality gate closed, 6 a study failed, 4 another writer
holds the warehouse, 2 an invalid study file, 1 any other problem (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from rxcohort.spark import add_engine_arguments


def build_parser() -> argparse.ArgumentParser:
    """The job's arguments (the scheduling examples' tests parse their command lines with it)."""
    parser = argparse.ArgumentParser(
        prog="refresh.py", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("delivery_dir", help="the delivery directory (CONTRACT section 1)")
    parser.add_argument("--warehouse", default=None, help="warehouse directory")
    parser.add_argument(
        "--studies",
        nargs="+",
        default=["cohorts"],
        help="study files or folders of them (default: cohorts)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per step")
    parser.add_argument(
        "--full",
        action="store_true",
        help="classify every dispensing row again (default: only those the changes can affect)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read and hash every file (default: not those whose size and time are as loaded)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for another writer of the warehouse (default: fail at once)",
    )
    add_engine_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from rxcohort.config import app_settings
    from rxcohort.errors import RxCohortError
    from rxcohort.pipelines.refresh import refresh, study_sources
    from rxcohort.preflight import check_delivery

    try:
        check_delivery(args.delivery_dir)
        sources = study_sources(args.studies)
    except RxCohortError as exc:
        print(f"rxcohort refresh: {exc}", file=sys.stderr)
        return exc.exit_code

    from rxcohort.spark import build_session

    def report(step) -> None:  # type: ignore[no-untyped-def]
        print(step.json() if args.json else step.line(), flush=True)

    try:
        result = refresh(
            lambda: build_session(
                engine=args.engine, remote=args.remote, app_name="rxcohort-refresh"
            ),
            args.delivery_dir,
            warehouse=args.warehouse or app_settings().warehouse,
            studies=sources,
            lock_wait=args.wait,
            progress=lambda message: print(f"... {message}", file=sys.stderr),
            report=report,
            full=args.full,
            verify=args.verify,
        )
    except RxCohortError as exc:
        print(f"rxcohort refresh: {exc}", file=sys.stderr)
        return exc.exit_code
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
