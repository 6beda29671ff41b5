"""The Spark session factory (layered settings in, one configured session out), and small frames
made on the driver."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from rxcohort.config import SparkSettings, spark_settings
from rxcohort.log import get_logger

log = get_logger("spark")

LOG4J_CONF = Path(__file__).resolve().parent / "resources" / "log4j2.properties"

JAVA_HELP = (
    "Java 17 is required by Spark 4 but was not found; install it "
    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) "
    "or set JAVA_HOME"
)


class JavaMissingError(RuntimeError):
    """Raised when no usable Java runtime is on the machine."""


def java_version() -> int | None:
    """Major version of the Java runtime Spark will use, or None when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
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
    settings: SparkSettings | None = None, *, app_name: str | None = None
) -> SparkSession:
    """Return the active session, or build one from ``settings`` (default: the layered config).

    Under spark-submit an active session or submit-time settings win: the ``cluster`` profile
    sets nothing, so spark-submit's ``--master`` and memory flags are what count.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = settings or spark_settings()
    check_java()
    builder = SparkSession.builder.appName(app_name or settings.app_name)
    if settings.master and "spark.master" not in _submit_conf():
        builder = builder.master(settings.master)
    spark_conf = dict(settings.spark_conf)
    if settings.quiet_console:
        # Spark's log4j banner and warnings are not for our users; errors still show.
        quiet = f"-Dlog4j2.configurationFile={LOG4J_CONF.as_uri()}"
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            if "log4j2.configurationFile" not in spark_conf.get(key, ""):
                spark_conf[key] = f"{spark_conf.get(key, '')} {quiet}".strip()
    for key, value in spark_conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.log_level)
    log.info(
        "spark %s session up: master=%s, shuffle partitions=%s",
        session.version,
        session.sparkContext.master,
        session.conf.get("spark.sql.shuffle.partitions"),
    )
    return session


def _submit_conf() -> set[str]:
    # spark-submit passes its settings to the Python driver through this variable.
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return {"spark.master"} if "--master" in submit_args else set()


def local_frame(
    spark: SparkSession, rows: Sequence[Sequence[object]], schema: StructType
) -> DataFrame:
    """A small frame of ``rows`` (tuples in ``schema``'s column order), built in the JVM.

    ``spark.createDataFrame`` on a list ships pickled rows that Python worker processes must
    unpickle, and starting those workers costs seconds in a job that otherwise takes
    milliseconds; an Arrow table goes to the JVM as it is. Values are Python values of the
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
