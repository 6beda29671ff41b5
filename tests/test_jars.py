"""The Delta JAR cache of the classic spark engine: manifest checks and the missing-JARs message.

No Spark starts here: these are file checks, so they run in milliseconds.
"""

from __future__ import annotations

import hashlib
import re
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pyspark
import pytest

from rxcohort import jars
from rxcohort.config import JARS_VAR
from rxcohort.errors import RxCohortError

REPO = Path(__file__).resolve().parents[1]
POM = REPO / "build" / "delta-jars" / "pom.xml"


def _write_cache(directory: Path, contents: dict[str, bytes]) -> dict[str, str]:
    """Fake JARs and a jars.txt as `make delta-jars` writes it (sha256sum format)."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, data in contents.items():
        (directory / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    lines = [f"{digest}  {name}" for name, digest in digests.items()]
    (directory / jars.MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return digests


def _missing_message(directory: Path) -> str:
    with pytest.raises(jars.DeltaJarsMissingError) as caught:
        jars.delta_jars(directory)
    return str(caught.value)


def test_conf_lists_the_manifest_jars_in_order(tmp_path):
    _write_cache(tmp_path, {"delta-storage-9.jar": b"storage", "delta-spark_9.jar": b"spark"})
    assert jars.delta_spark_conf(tmp_path) == {
        "spark.jars": f"{tmp_path / 'delta-storage-9.jar'},{tmp_path / 'delta-spark_9.jar'}",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }


def test_binary_mode_manifest_lines_are_read(tmp_path):
    _write_cache(tmp_path, {"a.jar": b"a"})
    digest = hashlib.sha256(b"a").hexdigest()
    (tmp_path / jars.MANIFEST).write_text(f"{digest} *a.jar\n", encoding="utf-8")
    assert jars.delta_jars(tmp_path) == [tmp_path / "a.jar"]


def test_a_jar_not_in_the_manifest_stays_off_the_classpath(tmp_path):
    _write_cache(tmp_path, {"a.jar": b"a"})
    (tmp_path / "stray-1.0.jar").write_bytes(b"stray")
    assert jars.delta_jars(tmp_path) == [tmp_path / "a.jar"]


def test_jars_dir_is_the_env_override_else_inside_the_venv(tmp_path, monkeypatch):
    monkeypatch.setenv(JARS_VAR, str(tmp_path))
    assert jars.jars_dir() == tmp_path.resolve()
    monkeypatch.delenv(JARS_VAR)
    assert jars.jars_dir() == Path(sys.prefix).resolve() / "share" / "rxcohort" / "jars"


def test_no_cache_says_in_one_line_how_to_get_the_jars(tmp_path):
    message = _missing_message(tmp_path / "nowhere")
    assert "\n" not in message
    assert "no jars.txt" in message
    assert "make delta-jars" in message
    assert "offline kit" in message
    assert JARS_VAR in message


def test_missing_jars_error_is_a_runtime_error_the_cli_prints_as_one_line(tmp_path):
    with pytest.raises(RuntimeError) as caught:
        jars.delta_spark_conf(tmp_path)
    assert isinstance(caught.value, RxCohortError)


def test_a_changed_jar_is_refused(tmp_path):
    _write_cache(tmp_path, {"a.jar": b"a", "b.jar": b"b"})
    (tmp_path / "b.jar").write_bytes(b"B")
    assert "b.jar does not match its sha256" in _missing_message(tmp_path)
    # presence-only mode still accepts it: the hash check is what catches the change
    assert jars.delta_jars(tmp_path, verify=False) == [tmp_path / "a.jar", tmp_path / "b.jar"]


def test_a_listed_jar_that_is_gone_is_refused(tmp_path):
    _write_cache(tmp_path, {"a.jar": b"a", "b.jar": b"b"})
    (tmp_path / "a.jar").unlink()
    assert "a.jar is listed in jars.txt but missing" in _missing_message(tmp_path)


@pytest.mark.parametrize(
    "line",
    [
        f"{'0' * 64}  ../outside.jar",  # a manifest cannot point outside its directory
        f"{'0' * 63}  a.jar",  # not a sha256
        f"{'0' * 64}  a.zip",  # not a JAR
    ],
)
def test_a_malformed_manifest_line_is_refused(tmp_path, line):
    (tmp_path / jars.MANIFEST).write_text(line + "\n", encoding="utf-8")
    assert "jars.txt line 1 is not" in _missing_message(tmp_path)


def test_an_empty_manifest_is_refused(tmp_path):
    (tmp_path / jars.MANIFEST).write_text("\n", encoding="utf-8")
    assert "lists no JAR" in _missing_message(tmp_path)


def _pom_properties() -> dict[str, str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = ET.parse(POM).getroot().find("m:properties", ns)
    assert properties is not None
    return {child.tag.split("}")[1]: (child.text or "") for child in properties}


def test_pom_targets_the_installed_pyspark_and_delta_release_line():
    properties = _pom_properties()
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    assert properties["spark.binary.version"] == spark_minor
    # The Python API and the JARs must come from the same Delta release line.
    pip_minor = version("delta-spark").split(".")[:2]
    assert properties["delta.version"].split(".")[:2] == pip_minor


def _artifact(jar_name: str) -> str:
    return re.split(r"-\d", jar_name, maxsplit=1)[0]


def test_installed_cache_adds_nothing_pyspark_already_ships():
    try:
        cached = jars.delta_jars(verify=False)
    except jars.DeltaJarsMissingError:
        pytest.skip("no Delta JAR cache here (make delta-jars)")
    shipped = {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    names = {_artifact(p.name) for p in cached}
    assert f"delta-spark_{_pom_properties()['spark.binary.version']}_2.13" in names
    assert names & shipped == set()
