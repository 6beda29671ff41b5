"""The ``rxcohort`` console command. Thin: parse options, call the library, print a summary.

Errors reach the user as one line on stderr and a non-zero exit status; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from rxcohort import terminal
from rxcohort.config import terminal_columns_given
from rxcohort.errors import ParameterError, RxCohortError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

app = typer.Typer(
    name="rxcohort",
    help="Cohorts of drug initiators from prescription-registry deliveries (Spark + Delta Lake).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(*, stderr: bool = False) -> Console:
    # Not on a terminal (a pipe, a log file, a scheduler) Rich would cut tables at 80 columns;
    # there is no screen to fit, so give lines room ($COLUMNS still wins).
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or terminal_columns_given() else 200
    return Console(stderr=stderr, width=width)


console = _console()
err_console = _console(stderr=True)

_STATE = {"debug": False}

StudyFileArg = Annotated[Path, typer.Argument(help="A study file (cohorts/*.yaml).")]
StudyIdArg = Annotated[str, typer.Argument(help="Study id (the study file name without .yaml).")]
DeliveryDirArg = Annotated[Path, typer.Argument(help="The delivery directory (CONTRACT §1).")]

WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse directory (default: ./warehouse or $RXCOHORT_WAREHOUSE).",
    ),
]


EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        "-e",
        help="sail (embedded, the default), spark (classic Spark + delta-spark) or remote "
        "(a Spark Connect server); default $RXCOHORT_ENGINE or conf.",
        show_default=False,
    ),
]
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--remote",
        help="Spark Connect address for --engine remote, e.g. sc://host:15002 ($SPARK_REMOTE).",
        show_default=False,
    ),
]


WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        help="Seconds to wait for another writer of the warehouse to finish (default: fail at once).",
        min=0,
    ),
]


@contextmanager
def _writing(
    warehouse: Path,
    command: str,
    wait: float,
    engine: str | None,
    remote: str | None,
    *,
    create: bool = False,
) -> Iterator[SparkSession]:
    """The session of a command that writes: the engine choice checked, then the warehouse's
    write lock taken (see rxcohort.lock), then the engine started."""
    from rxcohort.lock import warehouse_lock

    _check_engine(engine, remote)
    with warehouse_lock(
        warehouse, command=command, wait_seconds=wait, create=create, say=_progress
    ):
        yield _spark(engine, remote)


def _warehouse(value: Path | None) -> Path:
    from rxcohort.config import app_settings

    return value if value is not None else Path(app_settings().warehouse)


def _spark(engine: str | None = None, remote: str | None = None, **options):
    """The session, started only after the cheap checks of the command have passed."""
    from rxcohort.spark import build_session

    return build_session(engine=engine, remote=remote, **options)


def _check_engine(engine: str | None, remote: str | None) -> None:
    # A mistyped engine is reported with the other cheap checks, before anything starts.
    from rxcohort.config import engine_choice

    engine_choice(engine, remote)


def print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    terminal.print_summary(console, title, rows)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _STATE["debug"] = debug


@app.command()
def generate(
    out_dir: Annotated[
        Path, typer.Argument(help="Directory to write the synthetic delivery into.")
    ],
    persons: Annotated[int, typer.Option(help="Number of persons in the population.")] = 20000,
    seed: Annotated[
        int, typer.Option(help="Random seed; same seed and options give identical files.")
    ] = 2013,
    start: Annotated[
        str, typer.Option(help="First day of the delivery period (YYYY-MM-DD).")
    ] = "2011-01-01",
    end: Annotated[
        str, typer.Option(help="Last day of the delivery period (YYYY-MM-DD).")
    ] = "2015-12-31",
    defects: Annotated[
        float, typer.Option(help="Share of rows given a delivery defect (0 to 0.5).")
    ] = 0.0,
    gzip: Annotated[bool, typer.Option("--gzip/--no-gzip", help="Write .csv.gz files.")] = False,
    ldn_rate: Annotated[
        float,
        typer.Option(
            "--ldn-rate",
            help="Share of persons who collect LDN in 2013-2014 (0.003 as in Norway; "
            "raise it to enrich a small population).",
        ),
    ] = 0.003,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
) -> None:
    """Write a synthetic NorPD-like delivery (CONTRACT §1) with truth.json beside it."""
    from rxcohort.generate import SAIL_CONF, generate_delivery

    first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
    _check_engine(engine, remote)
    result = generate_delivery(
        _spark(engine, remote, sail_conf=SAIL_CONF),
        out_dir,
        persons=persons,
        seed=seed,
        start=first,
        end=last,
        defects=defects,
        gzip=gzip,
        ldn_rate=ldn_rate,
    )
    print_summary(f"Generated delivery {out_dir}", result.summary_rows())


FullOpt = Annotated[
    bool,
    typer.Option(
        "--full",
        help="Classify every dispensing row again instead of only those the changed files "
        "can affect (the same result, slower).",
    ),
]
VerifyOpt = Annotated[
    bool,
    typer.Option(
        "--verify",
        help="Read and hash every file, also those whose size and modification time are as "
        "when they were loaded.",
    ),
]


@app.command()
def ingest(
    delivery_dir: DeliveryDirArg,
    warehouse: WarehouseOpt = None,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
    wait: WaitOpt = 0.0,
    full: FullOpt = False,
    verify: VerifyOpt = False,
) -> None:
    """Load a delivery into bronze, silver and quarantine, gated by the quality suites. Safe to repeat."""
    from rxcohort.preflight import check_delivery

    check_delivery(delivery_dir)
    root = _warehouse(warehouse)
    with _writing(root, "ingest", wait, engine, remote, create=True) as spark:
        from rxcohort.pipelines import ingest_delivery

        result = ingest_delivery(
            spark,
            delivery_dir,
            warehouse=root,
            progress=_progress,
            full=full,
            verify=verify,
        )
    print_summary(f"Ingested {delivery_dir}", result.summary_rows())


@app.command()
def check(
    study_file: StudyFileArg,
) -> None:
    """Validate a study file and print it in plain words. Starts no Spark."""
    from rxcohort.study import describe_study, load_study

    study = load_study(study_file)
    console.print(describe_study(study))


@app.command()
def run(
    study_file: StudyFileArg,
    warehouse: WarehouseOpt = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Rebuild a past run from its input versions.")
    ] = None,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
    wait: WaitOpt = 0.0,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Stop when an ATC code of the study matches no dispensing."),
    ] = False,
) -> None:
    """Build the study's cohort, outcomes, statistics, persistence and report."""
    from rxcohort.preflight import check_run_id, check_warehouse
    from rxcohort.study.loader import load_study

    study = load_study(study_file)  # a wrong study file fails here, before any engine starts
    root = check_warehouse(_warehouse(warehouse), inputs=True)
    if as_of is not None:
        check_run_id(root, study.study_id, as_of)
    with _writing(root, "run", wait, engine, remote) as spark:
        from rxcohort.pipelines import run_study

        result = run_study(
            spark,
            study_file,
            warehouse=root,
            as_of=as_of,
            progress=_progress,
            strict=strict,
        )
    print_summary(f"Study {result.study_id}", result.summary_rows())


@app.command()
def refresh(
    delivery_dir: DeliveryDirArg,
    studies: Annotated[
        list[Path] | None,
        typer.Option(
            "--studies",
            help="Study files or folders of them (repeatable; default: ./cohorts).",
            show_default=False,
        ),
    ] = None,
    warehouse: WarehouseOpt = None,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
    wait: WaitOpt = 0.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per step on stdout, for a scheduler.")
    ] = False,
    full: FullOpt = False,
    verify: VerifyOpt = False,
) -> None:
    """Ingest a delivery, then run every study whose inputs or study file changed.

    Exit status: 0 done or up to date, 5 the quality gate closed, 6 a study failed,
    4 another writer holds the warehouse, 1 the delivery cannot be read, 2 a bad study file.
    """
    from rxcohort.pipelines.refresh import refresh as refresh_warehouse
    from rxcohort.pipelines.refresh import study_sources
    from rxcohort.preflight import check_delivery

    check_delivery(delivery_dir)
    sources = study_sources(studies or [Path("cohorts")])
    _check_engine(engine, remote)
    root = _warehouse(warehouse)

    def report(step) -> None:  # type: ignore[no-untyped-def]
        if as_json:
            print(step.json(), flush=True)
        else:
            console.print(step.line(), markup=False, highlight=False)

    result = refresh_warehouse(
        lambda: _spark(engine, remote),
        delivery_dir,
        warehouse=root,
        studies=sources,
        lock_wait=wait,
        progress=_progress,
        report=report,
        full=full,
        verify=verify,
    )
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def demo(
    warehouse: WarehouseOpt = None,
    persons: Annotated[int | None, typer.Option(help="Persons in the synthetic delivery.")] = None,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Generate a synthetic delivery, ingest it and run the reference study."""
    from rxcohort.demo import reference_study_path, run_demo

    reference_study_path(_demo_study())  # found before any engine starts
    root = _warehouse(warehouse)
    with _writing(root, "demo", wait, engine, remote, create=True) as spark:
        run_demo(
            spark,
            warehouse=root,
            persons=persons,
            progress=_progress,
            console=console,
        )


@app.command()
def export(
    study_id: StudyIdArg,
    out: Annotated[Path, typer.Option("--out", help="Directory for the CSV files.")],
    warehouse: WarehouseOpt = None,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="csv: one file per table; summarised_result: DARWIN EU's long format "
            "(summarised_result.csv and settings.csv).",
        ),
    ] = "csv",
) -> None:
    """Write the study's result tables as CSV, person counts 1-4 masked as <5."""
    from rxcohort.preflight import check_export_format, check_study_tables

    check_export_format(format)
    check_study_tables(_warehouse(warehouse), study_id)
    _check_engine(engine, remote)
    from rxcohort.export import export_study

    written = export_study(
        _spark(engine, remote),
        study_id,
        out=out,
        warehouse=_warehouse(warehouse),
        format=format,
    )
    print_summary(f"Exported {study_id}", [(p.name, "written") for p in written])


@app.command()
def report(
    study_id: StudyIdArg,
    warehouse: WarehouseOpt = None,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Rebuild the study's HTML report (studies/<study_id>/report.html) from its tables."""
    from rxcohort.preflight import check_study_tables

    root = _warehouse(warehouse)
    check_study_tables(root, study_id)
    with _writing(root, "report", wait, engine, remote) as spark:
        from rxcohort.report import build_report

        path = build_report(spark, warehouse=root, study_id=study_id)
    print_summary(f"Report {study_id}", [("report", str(path))])


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help='Spark SQL, e.g. "SELECT count(*) FROM silver.dispensings".')
    ],
    warehouse: WarehouseOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the result to .csv or .parquet instead.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 50,
    engine: EngineOpt = None,
    remote: RemoteOpt = None,
) -> None:
    """Run Spark SQL over the warehouse tables (silver.dispensings, <study_id>.cohort, ...)."""
    from rxcohort.preflight import check_warehouse

    check_warehouse(_warehouse(warehouse))
    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise ParameterError(f"--out must end in .csv or .parquet, not {out.name}")
    _check_engine(engine, remote)
    from rxcohort.analyst import run_sql

    run_sql(
        _spark(engine, remote),
        query,
        warehouse=_warehouse(warehouse),
        out=out,
        limit=limit,
        console=console,
    )


@app.command()
def lock(
    warehouse: WarehouseOpt = None,
    clear: Annotated[
        bool,
        typer.Option(
            "--clear",
            help="Clear the record of a writer that crashed (never a live writer's lock).",
        ),
    ] = False,
) -> None:
    """Show who holds the warehouse's write lock, or who last held it. Starts no Spark."""
    from rxcohort.lock import clear_stale_record, lock_state
    from rxcohort.preflight import check_warehouse

    root = check_warehouse(_warehouse(warehouse))
    if clear:
        cleared = clear_stale_record(root)  # raises, naming a live holder
        console.print(
            f"cleared the record of {cleared.describe()}, which ended without releasing the lock"
            if cleared
            else "nothing to clear: " + lock_state(root).describe()
        )
        return
    state = lock_state(root)
    console.print(state.describe())
    if state.held:
        raise typer.Exit(4)


@app.command()
def tables(warehouse: WarehouseOpt = None) -> None:
    """List the warehouse's Delta tables with version and row count."""
    from rxcohort.analyst import list_tables

    list_tables(_warehouse(warehouse), console=console)


@app.command()
def history(
    table: Annotated[
        str, typer.Argument(help="Table name, e.g. silver.dispensings or ldn_opioids_2013.cohort.")
    ],
    warehouse: WarehouseOpt = None,
) -> None:
    """Show a table's Delta commit history."""
    from rxcohort.analyst import show_history

    show_history(_warehouse(warehouse), table, console=console)


def _demo_study() -> str:
    from rxcohort.config import app_settings

    return app_settings().demo.study


def _progress(message: str) -> None:
    err_console.print(f"[dim]…[/dim] {message}")


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ParameterError(f"{option} must be a date as YYYY-MM-DD, not {value!r}") from exc


def main() -> None:
    """Console entry point: one clear line and a non-zero status on any error."""
    try:
        code = app(standalone_mode=False)  # a typer.Exit(n) inside a command comes back as n
        if isinstance(code, int) and code:
            sys.exit(code)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("rxcohort: aborted")
        sys.exit(130)
    except Exception as exc:
        import click

        if _STATE["debug"]:
            err_console.print_exception()
        if isinstance(exc, click.UsageError):
            sys.stderr.write(f"rxcohort: {exc.format_message()}\n")
            sys.exit(2)
        if isinstance(exc, click.ClickException):
            sys.stderr.write(f"rxcohort: {exc.format_message()}\n")
            sys.exit(exc.exit_code)
        if isinstance(exc, RxCohortError):
            sys.stderr.write(f"rxcohort: {_one_line(str(exc))}\n")
            sys.exit(exc.exit_code)
        from rxcohort.spark import JavaMissingError

        if isinstance(exc, JavaMissingError):
            sys.stderr.write(f"rxcohort: {exc}\n")
            sys.exit(3)
        sys.stderr.write(
            f"rxcohort: internal error: {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug)\n"
        )
        sys.exit(1)


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first[:500]


if __name__ == "__main__":
    main()
