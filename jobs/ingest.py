"""spark-submit entry point for ``rxcohort ingest``.

    spark-submit jobs/ingest.py DELIVERY_DIR --warehouse WH [--expectations DIR]

Thin on purpose: the work is :func:`rxcohort.pipelines.ingest_delivery`, the same function the
``rxcohort ingest`` command calls. Exit status 0 on success, 1 with one line on stderr when the
delivery stops the ingest, 5 when a quality gate closes, 4 when another writer holds the warehouse.
"""

from __future__ import annotations

import argparse
import sys

from rxcohort.spark import add_engine_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest.py", description=__doc__.splitlines()[0])
    parser.add_argument("delivery_dir", help="the delivery directory (CONTRACT section 1)")
    parser.add_argument("--warehouse", default=None, help="warehouse directory")
    add_engine_arguments(parser)
    parser.add_argument(
        "--expectations",
        default=None,
        help="directory of the expectation suites (default: the checkout's expectations/)",
    )
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
    args = parser.parse_args(argv)

    from rxcohort.config import app_settings
    from rxcohort.errors import RxCohortError
    from rxcohort.pipelines import ingest_delivery
    from rxcohort.spark import build_session

    warehouse = args.warehouse or app_settings().warehouse
    spark = build_session(engine=args.engine, remote=args.remote, app_name="rxcohort-ingest")
    try:
        result = ingest_delivery(
            spark,
            args.delivery_dir,
            warehouse=warehouse,
            progress=lambda message: print(f"... {message}", file=sys.stderr),
            expectations_dir=args.expectations,
            lock_wait=args.wait,
            full=args.full,
            verify=args.verify,
        )
    except RxCohortError as exc:
        print(f"rxcohort ingest: {exc}", file=sys.stderr)
        return exc.exit_code
    for key, value in result.summary_rows():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
