"""The Delta Lake JARs of the classic ``spark`` engine: fetched at install time, checked here.

``make delta-jars`` has Maven copy them (the versions are in ``build/delta-jars/pom.xml``)
into a directory of their own and writes ``jars.txt`` there last, in ``sha256sum`` format.
A run only reads that directory. It never resolves packages (``spark.jars.packages``, Ivy):
that would need the network on every driver at every session start, and could resolve other
versions than the ones tested, so a cohort rebuilt later might not run on the same code.

Only a directory whose ``jars.txt`` matches its JARs is used: a half-finished download or a
JAR swapped by hand is refused with one line that says how to get the right ones.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from rxcohort.config import JARS_VAR, jars_dir_override
from rxcohort.errors import RxCohortError

MANIFEST = "jars.txt"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

# `sha256sum` output: the digest, a space, then a space (text mode) or `*` (binary mode).
_MANIFEST_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>[^/\\]+\.jar)$")


class DeltaJarsMissingError(RxCohortError, RuntimeError):
    """The Delta JARs are not installed, or no longer match their manifest.

    An ``RxCohortError`` too, so the CLI prints its one-line message instead of a traceback.
    """


def jars_dir() -> Path:
    """Where the Delta JARs are: ``$RXCOHORT_JARS_DIR``, else ``<sys.prefix>/share/rxcohort/jars``.

    ``sys.prefix`` is the active virtual environment, where ``make delta-jars`` puts them by
    default, so a venv carries the JARs that match its pyspark and removing it removes them.
    """
    override = jars_dir_override()
    if override:
        return Path(override).expanduser().resolve()
    return Path(sys.prefix).resolve() / "share" / "rxcohort" / "jars"


def _missing(directory: Path, reason: str) -> DeltaJarsMissingError:
    return DeltaJarsMissingError(
        f"the Delta JARs for the spark engine are not usable in {directory} ({reason}): "
        f"run `make delta-jars` in the rxcohort checkout, or copy the offline kit's jars "
        f"(with their {MANIFEST}) there or set {JARS_VAR} to their directory"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    """``jars.txt`` of ``directory`` as {file name: sha256}, in the file's order.

    Names must be plain file names: a manifest cannot point outside its own directory.
    """
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise _missing(directory, f"no {MANIFEST}")
    entries: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.match(line.rstrip())
        if match is None:
            raise _missing(directory, f"{MANIFEST} line {number} is not '<sha256>  <name>.jar'")
        entries[match["name"]] = match["digest"].lower()
    if not entries:
        raise _missing(directory, f"{MANIFEST} lists no JAR")
    return entries


def delta_jars(directory: Path | None = None, *, verify: bool = True) -> list[Path]:
    """The cached Delta JARs (absolute paths, in manifest order), each checked against
    ``jars.txt``; ``directory`` defaults to :func:`jars_dir`.

    A JAR in the directory but not in the manifest is left out: only what ``make delta-jars``
    resolved together goes on the classpath. ``verify=False`` checks presence only (hashing
    the ~13 MB costs some tens of milliseconds).
    """
    directory = (directory or jars_dir()).resolve()
    jars: list[Path] = []
    for name, digest in read_manifest(directory).items():
        path = directory / name
        if not path.is_file():
            raise _missing(directory, f"{name} is listed in {MANIFEST} but missing")
        if verify and _sha256(path) != digest:
            raise _missing(directory, f"{name} does not match its sha256 in {MANIFEST}")
        jars.append(path)
    return jars


def delta_spark_conf(directory: Path | None = None) -> dict[str, str]:
    """The settings a classic SparkSession needs for Delta, set before its JVM starts.

    ``spark.jars`` puts the cached JARs on the driver's and executors' classpath; the
    extension and the catalog make ``format("delta")``, Delta SQL and time travel work. These
    are static settings: a caller with other SQL extensions joins them with a comma.
    """
    jars = delta_jars(directory)
    return {
        "spark.jars": ",".join(str(path) for path in jars),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    }
