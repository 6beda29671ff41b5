"""The offline install kit (`make bundle`) installs and works with every package index out of reach.

The kit in dist/ is unpacked into a temporary directory and its install.sh puts it into a fresh
venv with pip pointed at a closed port, ``PIP_NO_INDEX``, no find-links and no pip
configuration, as on an air-gapped server. From a directory outside the repository, the
installed rxcohort (never this checkout) then checks the reference study, generates a small
delivery, ingests it and runs the study on sail and, with Java, on spark. Both engines must give
the same cohort. One install serves the whole module; `make test-bundle` builds the kit first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable
from packaging.utils import canonicalize_name, parse_wheel_filename

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
KIT_NAME = f"rxcohort-offline-{VERSION}"
ARCHIVE = REPO / "dist" / f"{KIT_NAME}.tar.gz"
STUDY = "ldn_opioids_2013"
PERSONS, LDN_RATE = 800, 0.1
# Packages `python3.11 -m venv` puts in every venv before the kit is installed.
VENV_SEED = {"pip", "setuptools"}
TIMEOUT = 1200


def _offline_env() -> dict[str, str]:
    """This process's environment with every package source and every rxcohort setting gone:
    pip can reach no index, and nothing points back at this checkout or its venv."""
    dropped = ("PIP_", "RXCOHORT_", "PYSPARK_", "SPARK_", "PYTHON")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(dropped) and key != "VIRTUAL_ENV"
    }
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env.get("PATH", "").split(os.pathsep)
        if entry and not Path(entry).resolve().is_relative_to(REPO)
    )
    env |= {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # the discard port: nothing answers
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        # The kit's small-machine profile (local[2], 2 GB); it comes from the installed conf/.
        "RXCOHORT_ENV": "test",
        "TZ": "UTC",
    }
    return env


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    if not ARCHIVE.is_file():
        pytest.fail(
            f"{ARCHIVE.relative_to(REPO)} is missing: run `make bundle` (or make test-bundle)"
        )
    recorded = (ARCHIVE.parent / f"{ARCHIVE.name}.sha256").read_text().split()[0]
    digest = hashlib.sha256()
    with ARCHIVE.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    assert digest.hexdigest() == recorded, f"{ARCHIVE.name} does not match its .sha256"
    root = tmp_path_factory.mktemp("kit")
    assert not root.resolve().is_relative_to(REPO)
    _ok(_run(["tar", "-xzf", str(ARCHIVE)], cwd=root, env=_offline_env()))
    return root / KIT_NAME


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The working directory of every command: outside the repository and without a conf/."""
    directory = tmp_path_factory.mktemp("work")
    assert not directory.resolve().is_relative_to(REPO)
    return directory


@pytest.fixture(scope="module")
def installed(kit, work) -> tuple[Path, str]:
    """The venv install.sh made from the kit alone, and what install.sh printed."""
    venv = work.parent / "venv"
    result = _ok(_run(["bash", str(kit / "install.sh"), str(venv)], cwd=work, env=_offline_env()))
    return venv, result


def rxcohort(venv: Path, *args: str, cwd: Path) -> str:
    """Runs an rxcohort command as the kit's README says: after sourcing its activate file."""
    activate = venv / "share" / "rxcohort" / "activate"
    script = 'source "$0" && exec rxcohort "$@"'
    return _ok(_run(["bash", "-c", script, str(activate), *args], cwd=cwd, env=_offline_env()))


def rxcohort_python(venv: Path, code: str, *, cwd: Path) -> str:
    """Runs Python code in the venv, activated as for rxcohort."""
    activate = venv / "share" / "rxcohort" / "activate"
    script = 'source "$0" && exec python -c "$1"'
    return _ok(_run(["bash", "-c", script, str(activate), code], cwd=cwd, env=_offline_env()))


def cohort_counts(warehouse: Path) -> Counter:
    table = DeltaTable(str(warehouse / "studies" / STUDY / "cohort"))
    return Counter(table.to_pyarrow_table(columns=["exposure_group"]).column(0).to_pylist())


def test_the_kit_is_complete_and_every_file_matches_sha256sums(kit):
    listed = {
        line.split("  ", 1)[1]
        for line in (kit / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    }
    present = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()}
    assert listed == present - {"SHA256SUMS"}
    for directory in ("conf/base", "cohorts", "expectations"):
        shipped = {p.name for p in (kit / directory).iterdir()}
        assert shipped == {p.name for p in (REPO / directory).iterdir()}, directory
    assert (kit / "jars" / "jars.txt").is_file()
    assert (kit / "wheels" / f"rxcohort-{VERSION}-py3-none-any.whl").is_file()
    _ok(
        _run(
            ["sha256sum", "--quiet", "--strict", "--check", "SHA256SUMS"],
            cwd=kit,
            env=_offline_env(),
        )
    )


def test_install_takes_exactly_the_kits_wheels(installed, kit):
    venv, output = installed
    assert f"install: done: rxcohort {VERSION} in {venv.resolve()}" in output
    listing = _ok(
        _run(
            [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
            cwd=kit.parent,
            env=_offline_env(),
        )
    )
    installed_versions = {canonicalize_name(d["name"]): d["version"] for d in json.loads(listing)}
    kit_versions = {
        name: str(version)
        for name, version, _, _ in map(
            parse_wheel_filename, (p.name for p in (kit / "wheels").glob("*.whl"))
        )
    }
    assert {n: installed_versions.get(n) for n in kit_versions} == kit_versions
    assert set(installed_versions) - set(kit_versions) <= VENV_SEED


PROBE = """
import json
from pathlib import Path
import rxcohort, rxcohort.jars
from rxcohort.config import conf_dir
print(json.dumps({
    "package": str(Path(rxcohort.__file__).resolve().parent),
    "conf": str(conf_dir().resolve()) if conf_dir() else None,
    "jars": str(rxcohort.jars.jars_dir()),
    "n_jars": len(rxcohort.jars.delta_jars()),
}))
"""


def test_the_installed_package_finds_its_files_in_the_venv_and_none_in_the_checkout(
    installed, work
):
    venv, _ = installed
    share = (venv / "share" / "rxcohort").resolve()
    # Activated as the README says: everything is found inside the venv.
    found = json.loads(rxcohort_python(venv, PROBE, cwd=work))
    assert Path(found["package"]).is_relative_to(venv.resolve())
    assert found["conf"] == str(share / "conf")
    assert found["jars"] == str(share / "jars") and found["n_jars"] >= 1
    expectations = rxcohort_python(
        venv,
        "from rxcohort.pipelines.ingest import default_expectations_dir as d; print(d().resolve())",
        cwd=work,
    )
    assert expectations.strip() == str(share / "expectations")
    # Without RXCOHORT_CONF_DIR the installed package finds the kit's conf in its own
    # environment, never this checkout.
    python = str(venv / "bin" / "python")
    alone = json.loads(_ok(_run([python, "-c", PROBE], cwd=work, env=_offline_env())))
    assert alone["conf"] == str(share / "conf")


def test_check_describes_the_reference_study(installed):
    venv, _ = installed
    share = venv / "share" / "rxcohort"
    out = rxcohort(venv, "check", f"cohorts/{STUDY}.yaml", cwd=share)
    # rich wraps the paragraphs to its width: compare the words.
    assert f"(study {STUDY}, study file schema version 1)" in " ".join(out.split())


@pytest.fixture(scope="module")
def delivery(installed, work) -> Path:
    venv, _ = installed
    out = work / "delivery"
    rxcohort(
        venv, "generate", str(out), "--persons", str(PERSONS), "--ldn-rate", str(LDN_RATE), cwd=work
    )
    return out


def _ingest_and_run(venv: Path, delivery: Path, work: Path, engine: str) -> Path:
    warehouse = work / f"warehouse_{engine}"
    study_file = venv / "share" / "rxcohort" / "cohorts" / f"{STUDY}.yaml"
    # Exit 0 means every hard expectation passed: a failed quality gate exits 1.
    rxcohort(venv, "ingest", str(delivery), "-w", str(warehouse), "--engine", engine, cwd=work)
    rxcohort(venv, "run", str(study_file), "-w", str(warehouse), "--engine", engine, cwd=work)
    return warehouse


@pytest.fixture(scope="module")
def sail_counts(installed, delivery, work) -> Counter:
    venv, _ = installed
    return cohort_counts(_ingest_and_run(venv, delivery, work, "sail"))


def test_ingest_and_run_on_sail(sail_counts):
    assert sum(sail_counts.values()) > 0


def test_ingest_and_run_on_spark_give_the_same_cohort(installed, delivery, work, sail_counts):
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no java on PATH or JAVA_HOME: the spark engine needs Java 17")
    venv, _ = installed
    spark_counts = cohort_counts(_ingest_and_run(venv, delivery, work, "spark"))
    assert spark_counts == sail_counts
    assert sum(spark_counts.values()) == sum(sail_counts.values()) > 0
