"""The jobs on the remote engine: a Spark Connect server in another process (Sail's, started
from the installed pysail), reached with ``--engine remote --remote sc://127.0.0.1:PORT``.

Generate, ingest and run through ``jobs/*.py`` against it give the same delivery and the same
study tables as the suite's own engine on the same inputs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from rxcohort import io
from rxcohort.generate import generate_delivery
from rxcohort.pipelines import ingest_delivery, run_study

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "cohorts" / "ldn_opioids_2013.yaml"
ARGS = {"persons": 800, "seed": 5, "ldn_rate": 0.1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "RUST_LOG": "error"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pysail", "spark", "server", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the Spark Connect server did not start: {log.read_text()[-2000:]}")
    yield f"sc://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


def job(script: str, *args: str, remote: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RXCOHORT_ENGINE"}
    env["RXCOHORT_ENV"] = "test"
    proc = subprocess.run(
        [sys.executable, str(REPO / "jobs" / script), *args, "--engine", "remote",
         "--remote", remote],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "engine: remote" in proc.stderr
    return proc.stdout


def _digests(delivery: Path) -> dict[str, str]:
    return {
        str(p.relative_to(delivery)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(delivery.rglob("*.csv"))
    }


def test_the_jobs_on_a_spark_connect_server_give_the_same_tables(spark, connect_server, tmp_path):
    remote_delivery, remote_wh = tmp_path / "remote_delivery", tmp_path / "remote_wh"
    job(
        "generate.py", str(remote_delivery), "--persons", str(ARGS["persons"]),
        "--seed", str(ARGS["seed"]), "--ldn-rate", str(ARGS["ldn_rate"]), "--defects", "0.002",
        remote=connect_server,
    )  # fmt: skip
    job("ingest.py", str(remote_delivery), "--warehouse", str(remote_wh), remote=connect_server)
    job("run.py", str(STUDY), "--warehouse", str(remote_wh), remote=connect_server)

    here_delivery, here_wh = tmp_path / "delivery", tmp_path / "wh"
    generate_delivery(
        spark,
        here_delivery,
        persons=ARGS["persons"],
        seed=ARGS["seed"],
        start=date(2011, 1, 1),
        end=date(2015, 12, 31),
        defects=0.002,
        gzip=False,
        ldn_rate=ARGS["ldn_rate"],
    )
    # The generator is deterministic on every engine: the same bytes.
    assert _digests(remote_delivery) == _digests(here_delivery)
    ingest_delivery(spark, here_delivery, warehouse=here_wh)
    run_study(spark, STUDY, warehouse=here_wh)
    for table in ("cohort", "attrition", "consumption", "group_results", "did_results"):
        ours = io.read_table(spark, here_wh / "studies" / "ldn_opioids_2013" / table)
        theirs = io.read_table(spark, remote_wh / "studies" / "ldn_opioids_2013" / table)
        assert ours.count() > 0, table
        assert _rounded(ours) == _rounded(theirs), table


def _rounded(frame) -> list[tuple]:
    # Sums may add in another order on another run: 10 significant digits are compared.
    rows = [
        tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row)
        for row in frame.collect()
    ]
    return sorted(rows, key=repr)
