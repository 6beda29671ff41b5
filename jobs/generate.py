"""spark-submit entry for the synthetic NorPD generator (same options as `rxcohort generate`).

    spark-submit --master spark://host:7077 jobs/generate.py /shared/delivery --persons 5000000

The output directory must be reachable from the driver: the driver concatenates the sorted
parts into one file per year.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from rxcohort.errors import RxCohortError
from rxcohort.generate import SAIL_CONF, generate_delivery
from rxcohort.spark import add_engine_arguments, build_session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--persons", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=2013)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2011, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2015, 12, 31))
    parser.add_argument("--defects", type=float, default=0.0)
    parser.add_argument("--ldn-rate", type=float, default=0.003)
    parser.add_argument("--gzip", action="store_true")
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = generate_delivery(
            build_session(
                engine=args.engine,
                remote=args.remote,
                app_name="rxcohort-generate",
                sail_conf=SAIL_CONF,
            ),
            args.out_dir,
            persons=args.persons,
            seed=args.seed,
            start=args.start,
            end=args.end,
            defects=args.defects,
            gzip=args.gzip,
            ldn_rate=args.ldn_rate,
        )
    except RxCohortError as exc:
        print(f"rxcohort generate: {exc}", file=sys.stderr)
        return 1
    for key, value in result.summary_rows():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
