"""Sessions on three engines (one configured session out), and small frames made on the driver.

Every job is written against the Spark Connect subset of the DataFrame API, so the same code
runs on each engine; this module is the only one that knows which engine is behind a session.

* ``sail`` (the default): Sail's Spark Connect server, written in Rust, started in this process
  on a free loopback port and stopped at exit. No JVM; Delta through Sail's own ``format("delta")``.
* ``spark``: classic PySpark (``local[*]``, or whatever ``spark-submit`` gives), Delta through
  delta-spark, whose JARs are fetched at install time (``make delta-jars``) and never at run time.
* ``remote``: any Spark Connect server (``--remote sc://host:port`` or ``SPARK_REMOTE``) that
  serves ``format("delta")`` (Sail, or Spark with the Delta Connect plugin) and sees the
  warehouse path as this process does.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from rxcohort.config import (
    ENGINES,
    SparkSettings,
    engine_choice,
    java_home,
    set_sail_environment,
    spark_settings,
    submitted_by_spark_submit,
    without_spark_connect_environment,
)
from rxcohort.errors import RxCohortError
from rxcohort.log import get_logger

log = get_logger("spark")

LOG4J_CONF = Path(__file__).resolve().parent / "resources" / "log4j2.properties"

JAVA_HELP = (
    "Java 17 is required by the spark engine but was not found; install it "
    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17), "
    "set JAVA_HOME, or use the embedded engine (--engine sail)"
)


class JavaMissingError(RuntimeError):
    """Raised when the spark engine is asked for and no usable Java runtime is on the machine."""


@dataclass(frozen=True)
class Engine:
    """What runs a session's jobs: its name and, for Spark Connect, the server's address."""

    name: str
    remote: str | None = None

    @property
    def delta(self) -> str:
        return {
            "sail": "Sail format(delta)",
            "spark": "Spark's Parquet reader and writer, deltalake's log (delta-spark for SQL)",
            "remote": "server format(delta)",
        }[self.name]


_ENGINES: dict[int, Engine] = {}
_SAIL: dict[str, object] = {}


def add_engine_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    """``--engine`` and ``--remote`` for a ``jobs/*.py`` script's argparse parser."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="engine (default under spark-submit: spark; else $RXCOHORT_ENGINE or conf)",
    )
    parser.add_argument("--remote", default=None, help="Spark Connect address (engine remote)")


def java_version() -> int | None:
    """Major version of the Java runtime classic Spark would use, or None when there is none."""
    home = java_home()
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java() -> None:
    version = java_version()
    if version is None:
        raise JavaMissingError(JAVA_HELP)
    if version < 17:
        raise JavaMissingError(f"Java {version} found; {JAVA_HELP}")


def build_session(
    settings: SparkSettings | None = None,
    *,
    engine: str | None = None,
    remote: str | None = None,
    app_name: str | None = None,
    sail_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A session on the chosen engine (the option, ``$RXCOHORT_ENGINE``, or conf; default sail).

    ``sail_conf`` overrides the embedded engine's settings from conf for this process (a job
    with other needs, e.g. the generator's memory). Under spark-submit the session
    spark-submit's JVM gives is used, with its own master and memory settings.
    """
    name, address = engine_choice(engine, remote)
    settings = settings or spark_settings()
    if sail_conf:
        settings = settings.model_copy(update={"sail_conf": {**settings.sail_conf, **sail_conf}})
    if name == "sail":
        session = _sail_session(settings)
        chosen = Engine("sail", _SAIL.get("remote"))  # type: ignore[arg-type]
    elif name == "remote":
        if not address:
            raise RxCohortError(
                "the remote engine needs a Spark Connect address: --remote sc://host:port "
                "or SPARK_REMOTE"
            )
        session = SparkSession.builder.remote(address).getOrCreate()
        _set_sql_conf(session, settings)
        chosen = Engine("remote", address)
    else:
        session = _classic_session(settings, app_name=app_name)
        chosen = Engine("spark")
    _ENGINES[id(session)] = chosen
    log.info(
        "engine: %s (spark %s API), Delta through %s", chosen.name, session.version, chosen.delta
    )
    return session


def session_engine(spark: SparkSession) -> Engine:
    """The engine behind ``spark``: as built here, else told apart by the session's kind."""
    known = _ENGINES.get(id(spark))
    if known is not None:
        return known
    return Engine("remote") if is_connect(spark) else Engine("spark")


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (sail, remote), False for classic PySpark."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def stop_session(spark: SparkSession) -> None:
    """Stop ``spark`` and, for the embedded engine, its in-process server."""
    engine = _ENGINES.pop(id(spark), None)
    spark.stop()
    if engine is not None and engine.name == "sail":
        _stop_sail()


# --------------------------------------------------------------------------------------------
# sail


def _sail_session(settings: SparkSettings) -> SparkSession:
    if "server" not in _SAIL:
        _start_sail(settings.sail_conf)
    session = SparkSession.builder.remote(str(_SAIL["remote"])).getOrCreate()
    _set_sql_conf(session, settings)
    return session


def _start_sail(sail_conf: dict[str, str]) -> None:
    try:
        from pysail.spark import SparkConnectServer
    except ImportError as exc:  # pragma: no cover - pysail is a pinned dependency
        raise RxCohortError(
            "the sail engine needs the pysail package (pip install pysail)"
        ) from exc
    # localCheckpoint (the lineage cut of rxcohort.cohort.build) keeps its files here; Sail's
    # reader of record batches needs a path, Spark keeps them in memory. The folder is named
    # by this process, so that a later one can remove it if this one is killed before exit.
    remove_dead_checkpoints()
    checkpoints = tempfile.mkdtemp(prefix=f"{_CHECKPOINTS_PREFIX}{os.getpid()}-")
    set_sail_environment(sail_conf, Path(checkpoints).as_uri())
    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    host, port = server.listening_address
    _SAIL.update(server=server, remote=f"sc://{host}:{port}", checkpoints=checkpoints)
    atexit.register(_stop_sail)


_CHECKPOINTS_PREFIX = "rxcohort-sail-"
_CHECKPOINTS_OF = re.compile(rf"^{_CHECKPOINTS_PREFIX}(\d+)-")


def remove_dead_checkpoints(directory: str | Path | None = None) -> int:
    """Remove the checkpoint folders (see :func:`_start_sail`) of rxcohort processes that are
    no longer running: one killed (a scheduler's timeout, SIGKILL) never ran its exit handler,
    and its folder may hold a cohort's worth of files. Returns how many were removed."""
    removed = 0
    for folder in Path(directory or tempfile.gettempdir()).glob(f"{_CHECKPOINTS_PREFIX}*"):
        found = _CHECKPOINTS_OF.match(folder.name)
        if found is None or not folder.is_dir() or _running(int(found.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def _stop_sail() -> None:
    server = _SAIL.pop("server", None)
    if server is not None:
        server.stop()  # type: ignore[attr-defined]
    checkpoints = _SAIL.pop("checkpoints", None)
    if checkpoints:
        shutil.rmtree(str(checkpoints), ignore_errors=True)
    _SAIL.pop("remote", None)


def _set_sql_conf(session: SparkSession, settings: SparkSettings) -> None:
    """Apply the session-level SQL settings a Spark Connect server accepts at run time."""
    for key, value in settings.spark_conf.items():
        if not key.startswith("spark.sql.") or key in _STATIC_SQL_CONF:
            continue
        try:
            session.conf.set(key, value)
        except Exception as exc:  # a server may refuse what it does not implement
            log.debug("engine does not take %s: %s", key, exc)


# Static settings (fixed when a JVM starts) cannot be set on a running session.
_STATIC_SQL_CONF = {"spark.sql.extensions", "spark.sql.catalog.spark_catalog"}


# --------------------------------------------------------------------------------------------
# spark


def _classic_session(settings: SparkSettings, *, app_name: str | None) -> SparkSession:
    from pyspark.sql import SparkSession as ClassicSession

    active = ClassicSession.getActiveSession()
    if active is not None and not is_connect(active):
        return active
    if not submitted_by_spark_submit():
        check_java()
    builder = ClassicSession.builder.appName(app_name or settings.app_name)
    if settings.master and not submitted_by_spark_submit():
        builder = builder.master(settings.master)
    spark_conf = dict(settings.spark_conf)
    if settings.quiet_console:
        # Spark's log4j banner and warnings are not for our users; errors still show.
        quiet = f"-Dlog4j2.configurationFile={LOG4J_CONF.as_uri()}"
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            if "log4j2.configurationFile" not in spark_conf.get(key, ""):
                spark_conf[key] = f"{spark_conf.get(key, '')} {quiet}".strip()
    if not submitted_by_spark_submit():
        from rxcohort.jars import delta_spark_conf

        # The JARs fetched at install time; spark-submit users pass --jars and these settings.
        spark_conf.update(delta_spark_conf())
    if "spark.sql.warehouse.dir" not in spark_conf and not submitted_by_spark_submit():
        # Spark's own catalog would make ./spark-warehouse wherever the command runs; rxcohort
        # keeps no tables in it (its warehouse is the Delta directory tree).
        spark_conf["spark.sql.warehouse.dir"] = _private_dir("rxcohort-spark-catalog-")
    for key, value in spark_conf.items():
        builder = builder.config(key, value)
    with without_spark_connect_environment():
        session = builder.getOrCreate()
    extensions = session.conf.get("spark.sql.extensions", "") or ""
    if "io.delta.sql.DeltaSparkSessionExtension" not in extensions:
        raise RxCohortError(
            "the spark engine needs delta-spark: submit with --jars <the Delta JARs> --conf "
            "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension --conf "
            "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog "
            "(see docs/cluster.md)"
        )
    return session


def _private_dir(prefix: str) -> str:
    """A temporary directory of this process, removed when it exits."""
    directory = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, directory, True)
    return directory


def pandas_validation_rows(spark: SparkSession) -> int:
    """Up to how many rows a quality suite is cheaper on a pandas copy than on the engine.

    Great Expectations' Spark engine runs one small query per metric. On the embedded engine
    such a query costs milliseconds, so every table is validated where it is; a JVM's job
    start-up makes a single collect to pandas cheaper up to about a million rows.
    """
    return 0 if session_engine(spark).name == "sail" else 1_000_000


# --------------------------------------------------------------------------------------------
# small frames


def local_frame(
    spark: SparkSession, rows: Sequence[Sequence[object]], schema: StructType
) -> DataFrame:
    """A small frame of ``rows`` (tuples in ``schema``'s column order), sent as one Arrow table.

    ``spark.createDataFrame`` on a list ships pickled rows that classic Spark's Python workers
    must unpickle, and starting those workers costs seconds in a job that otherwise takes
    milliseconds; an Arrow table goes to the engine as it is. Values are Python values of the
    column's type (None for null, a naive datetime is UTC, a dict for a map).
    """
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema.fields]
    table = pa.Table.from_arrays(
        [
            pa.array(list(values), type=field.type)
            for values, field in zip(columns, arrow_schema, strict=True)
        ],
        schema=arrow_schema,
    )
    return spark.createDataFrame(table, schema)
