"""A throwaway Spark standalone cluster on 127.0.0.1, started from the installed pyspark.

Used by the cluster tests: one master and N workers as child processes of the test, each with a
small share of the machine, stopped (with their process groups) when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _env(work: Path) -> dict[str, str]:
    # The suite's own engine may be Spark Connect; the cluster's processes are classic Spark.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "RXCOHORT_ENGINE")
    }
    env.update(
        {
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(work / "logs"),
            "SPARK_WORKER_DIR": str(work / "worker"),
            "PYSPARK_PYTHON": str(VENV_BIN / "python"),
            "PYSPARK_DRIVER_PYTHON": str(VENV_BIN / "python"),
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        }
    )
    return env


@contextmanager
def standalone_cluster(work: Path, *, workers: int = 2, cores: int = 1, memory: str = "1g"):
    """Yield the master URL of a running standalone cluster; stop it afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = free_port()
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = (work / f"{name}.log").open("w")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [spark_class, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(free_port())],
            "master",
        )  # fmt: skip
        _wait_for_port(port, 90)
        url = f"spark://127.0.0.1:{port}"
        for i in range(workers):
            start(
                ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", str(cores),
                 "--memory", memory, "--webui-port", str(free_port()), "--work-dir", str(work / f"w{i}")],
                f"worker{i}",
            )  # fmt: skip
        _wait_for_workers(work, workers, timeout=90)
        yield url
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _wait_for_workers(work: Path, n: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (work / "master.log").read_text(errors="replace")
        if text.count("Registering worker") >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{n} workers did not register with the master within {timeout:.0f} s")


def spark_submit(
    master: str,
    script: Path,
    args: list[str],
    *,
    work: Path,
    timeout: float = 900,
    conf: dict[str, str] | None = None,
) -> str:
    """Run ``script`` with spark-submit against ``master``; return its combined output.

    ``conf`` adds ``--conf`` settings or overrides the defaults below. The Delta JARs fetched
    at install time go to the driver and the executors with ``spark.jars``, as a user submits.
    """
    from rxcohort.jars import delta_spark_conf

    env = _env(work)
    env["RXCOHORT_ENV"] = "cluster"
    settings = {
        **delta_spark_conf(),
        "spark.executor.memory": "1g",
        "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.pyspark.python": str(VENV_BIN / "python"),
        "spark.ui.enabled": "false",
        **(conf or {}),
    }
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master", master,
        *[part for key, value in settings.items() for part in ("--conf", f"{key}={value}")],
        str(script),
        *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(
            f"spark-submit {script.name} failed ({proc.returncode}):\n{output[-4000:]}"
        )
    return output
