"""Jobs use only the Spark Connect subset of the DataFrame API, so they run on every engine."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Attributes that exist only on classic (JVM) sessions and frames.
CLASSIC_ONLY = {"sparkContext", "_jvm", "_jdf", "_jsc", "_jsparkSession", "rdd", "SparkContext"}


def _classic_only_uses(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute) and node.attr in CLASSIC_ONLY:
            name = node.attr
        elif isinstance(node, ast.Name) and node.id in CLASSIC_ONLY:
            name = node.id
        elif isinstance(node, ast.ImportFrom) and any(a.name == "SparkContext" for a in node.names):
            name = "SparkContext"
        if name:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    return sorted(found)


def test_no_classic_only_call_in_the_package_jobs_or_benchmarks():
    files = [
        *sorted((REPO / "src" / "rxcohort").rglob("*.py")),
        *sorted((REPO / "jobs").glob("*.py")),
        *sorted((REPO / "benchmarks").glob("*.py")),
    ]
    assert files
    found = [use for f in files for use in _classic_only_uses(f)]
    assert found == []


def test_the_check_sees_a_classic_only_call(tmp_path):
    # The check itself must be able to fail.
    sample = tmp_path / "job.py"
    sample.write_text(
        "from pyspark import SparkContext\n"
        "def f(spark):\n"
        "    return spark.sparkContext.parallelize([1]), spark.range(1).rdd\n"
    )
    assert _classic_only_uses(sample, tmp_path) == [
        "job.py:1: SparkContext",
        "job.py:3: rdd",
        "job.py:3: sparkContext",
    ]
